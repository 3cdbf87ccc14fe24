// The two message writers of dbus-next 0.10 that dbus-next-private.ts re-exports (the package ships no types for them).
declare module 'dbus-next/lib/message.js' {
  /** Marshals a message whose body is already in the marshaller's format; returns [bytes, fds]. */
  export function marshall(msg: Record<string, unknown>): [Buffer, number[]];
}
declare module 'dbus-next/lib/marshall-compat.js' {
  /** Marshals a dbus-next Message (body of plain values and Variants); returns [bytes, fds]. */
  export function marshallMessage(msg: unknown): [Buffer, number[]];
}
