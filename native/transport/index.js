// The compiled addon (node-gyp rebuild, run by npm ci); see transport.c.
module.exports = require('./build/Release/transport.node');
