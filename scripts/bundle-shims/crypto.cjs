// node:crypto for dbus-next's handshake (scripts/bundle.mjs), loaded at first use: the handshake needs it only
// for DBUS_COOKIE_SHA1, and the system bus authenticates with EXTERNAL. Under the unit's flags node compiles its
// own modules in the interpreter; crypto and its dozen internal modules were ~4 ms of every start.
let crypto;
const real = () => {
  crypto ??= require('node:crypto');
  return crypto;
};
exports.createHash = (...args) => real().createHash(...args);
exports.randomBytes = (...args) => real().randomBytes(...args);
