/**
 * The file at `path`, mapped read-only and returned as a V8 external string: its bytes stay in the page
 * cache (file-backed, shared, reclaimable) instead of a copy on the JavaScript heap. Throws when the file
 * cannot be read or holds a byte above 0x7f (only ASCII reads the same as Latin-1 and UTF-8).
 */
export function mapSource(path: string): string;
/** V8's low-memory collection (Isolate::LowMemoryNotification): compacts the heap and unmaps the pages it frees. */
export function reduceHeap(): void;
/** glibc's malloc_trim(0): gives free pages inside malloc's arenas back to the kernel; 1 if any was. */
export function mallocTrim(): number;
