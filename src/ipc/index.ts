// The legacy NDJSON socket shim: public surface for the daemon's entry point.
export { openFdStore, passedFdsFromEnv, socketFromSystemd } from './fdstore.js';
export { METHODS, type Method, SOCKET_CODES, type SocketCode } from './protocol.js';
export { listenFdsFromEnv, resolveGroupId, SocketPathError } from './socket-file.js';
export { SocketServer, type SocketServerOptions } from './socket-server.js';
