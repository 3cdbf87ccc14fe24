// xml2js for dbus-next (scripts/bundle.mjs), loaded at first use: dbus-next makes an XML builder with every bus
// connection and a parser with every proxy object, and the daemon builds XML only to answer Introspect calls and
// makes no proxy objects. xml2js, xmlbuilder and sax are ~140 KB of the bundle, all evaluated at every start.
let xml2js;
const real = () => {
  xml2js ??= require('xml2js');
  return xml2js;
};
class Builder {
  constructor(opts) {
    this.opts = opts;
  }
  buildObject(obj) {
    this.builder ??= new (real().Builder)(this.opts);
    return this.builder.buildObject(obj);
  }
}
class Parser {
  constructor(opts) {
    this.opts = opts;
  }
  parseString(text, callback) {
    this.parser ??= new (real().Parser)(this.opts);
    return this.parser.parseString(text, callback);
  }
}
module.exports = { Builder, Parser };
