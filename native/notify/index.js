// The compiled addon (node-gyp rebuild, run by npm ci); see notify.c.
module.exports = require('./build/Release/notify.node');
