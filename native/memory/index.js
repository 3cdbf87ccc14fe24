// The compiled addon (node-gyp rebuild, run by npm ci); see memory.c.
module.exports = require('./build/Release/memory.node');
