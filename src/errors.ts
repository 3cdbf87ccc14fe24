// One error type for the service layer; the D-Bus and socket faces each map its code to their own names.
// Messages are written for callers: they never carry a stack, an internal path or file contents.

export const ERROR_CODES = [
  'InvalidConfig',
  'ConfigUnreadable',
  'UnknownSection',
  'UnknownService',
  'RestartFailed',
  'Busy',
  'AccessDenied',
  'InteractiveAuthorizationRequired',
  'InvalidArgs',
  'Internal',
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

export class ServiceError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'ServiceError';
  }
}

/** D-Bus error names, as the contract fixes them. */
export const DBUS_ERROR_NAMES: Record<ErrorCode, string> = {
  InvalidConfig: 'org.openauto.System1.Error.InvalidConfig',
  ConfigUnreadable: 'org.openauto.System1.Error.ConfigUnreadable',
  UnknownSection: 'org.openauto.System1.Error.UnknownSection',
  UnknownService: 'org.openauto.System1.Error.UnknownService',
  RestartFailed: 'org.openauto.System1.Error.RestartFailed',
  Busy: 'org.openauto.System1.Error.Busy',
  AccessDenied: 'org.freedesktop.DBus.Error.AccessDenied',
  InteractiveAuthorizationRequired: 'org.freedesktop.DBus.Error.InteractiveAuthorizationRequired',
  InvalidArgs: 'org.freedesktop.DBus.Error.InvalidArgs',
  Internal: 'org.freedesktop.DBus.Error.Failed',
};

/** Legacy socket error codes, as the contract fixes them. */
export const SOCKET_ERROR_CODES: Record<ErrorCode, string> = {
  InvalidConfig: 'VALIDATION_FAILED',
  ConfigUnreadable: 'CONFIG_UNREADABLE',
  UnknownSection: 'UNKNOWN_SECTION',
  UnknownService: 'UNKNOWN_SERVICE',
  RestartFailed: 'RESTART_FAILED',
  Busy: 'INTERNAL_ERROR',
  AccessDenied: 'INTERNAL_ERROR',
  InteractiveAuthorizationRequired: 'INTERNAL_ERROR',
  InvalidArgs: 'INVALID_PARAMS',
  Internal: 'INTERNAL_ERROR',
};

/** Turns anything thrown into a ServiceError safe to show a caller; unknown errors become a bland Internal. */
export function toServiceError(err: unknown): ServiceError {
  if (err instanceof ServiceError) return err;
  return new ServiceError('Internal', 'internal error (see the journal)');
}

/** A caller's string, safe to echo in a message: bounded and without control characters. */
export function printable(s: string): string {
  const clean = s.replace(/[\p{Cc}\p{Cf}]/gu, '?');
  return clean.length > 64 ? `${clean.slice(0, 64)}…` : clean;
}
