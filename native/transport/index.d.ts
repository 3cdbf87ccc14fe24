/** A connection watched by the addon (see transport.c). */
export type Handle = { readonly __brand: 'openauto-transport' };
/** Takes over fd: onEvent(chunk) per chunk read, (null, 0) at end of input, (null, -errno) on an error,
 * (undefined) when queued output has drained. */
export function open(fd: number, onEvent: (chunk: Buffer | null | undefined, code?: number) => void): Handle;
/** Writes at once what the kernel takes, queues the rest: the bytes queued after the call, or -errno. */
export function write(h: Handle, text: string): number;
export function reading(h: Handle, on: boolean): void;
/** shutdown(SHUT_WR) once the queue is empty. */
export function end(h: Handle): void;
export function close(h: Handle): void;
export function fd(h: Handle): number;
/** SO_PEERCRED's pid, 0 when unknown. */
export function peerPid(fd: number): number;
/** fcntl(F_DUPFD_CLOEXEC): a new descriptor, or -errno. */
export function dup(fd: number): number;
