// node:assert for dbus-next's marshaller (scripts/bundle.mjs): it checks two invariants of every variant it
// writes. node:assert (with its error and diff modules, ~1.6 ms of a start under the unit's flags) is loaded
// only when one fails, to throw the same AssertionError.
function assert(value, message) {
  if (!value) require('node:assert')(value, message);
}
assert.strictEqual = (actual, expected, message) => {
  if (!Object.is(actual, expected)) require('node:assert').strictEqual(actual, expected, message);
};
module.exports = assert;
