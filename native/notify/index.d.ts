/** sd_pid_notify_with_fds(0, 0, state, fds): > 0 sent, 0 without $NOTIFY_SOCKET, < 0 a negative errno. */
export function notify(state: string, fds?: number[]): number;
