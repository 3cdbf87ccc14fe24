// Three things node cannot do for the daemon's memory (README, "Memory"):
//
//   mapSource(path: string): string
//     The daemon's bundle is ~700 KB of JavaScript that V8 keeps as a string for as long as any of its
//     functions may still be compiled lazily, i.e. for the daemon's lifetime. Read into a JS string, that
//     is 700 KB of anonymous memory; mapped here and handed to V8 as an external string
//     (node_api_create_external_string_latin1), the bytes stay file-backed pages: shared with the page
//     cache, dropped and re-read by the kernel under pressure, and not counted as the process's own.
//     Only ASCII is accepted (the bundle is built with charset=ascii): Latin-1 and UTF-8 read ASCII alike.
//     The mapping is private and read-only; installs replace the file by rename, so a running daemon keeps
//     the old inode. Unmapped when V8 frees the string.
//
//   reduceHeap(): void
//     What V8 does when the system is low on memory (Isolate::LowMemoryNotification): full collections that
//     compact and shrink the heap until nothing more is freed, and the pages they free unmapped rather than
//     kept in V8's pool for reuse. node's --expose-gc gc() is one plain full collection, which leaves the
//     heap's pages as fragmented as they were. Called by the heap trimmer (src/memory/heap-trim.ts) after a
//     burst, so it need not be cheap; ~10-20 ms for the daemon's heap. Uses V8's own API (not N-API): the
//     addon is compiled against the node that runs it (npm ci, the package's build).
//
//   mallocTrim(): number
//     glibc's malloc_trim(0), after reduceHeap: V8 and node free their off-heap buffers with free(), and
//     glibc keeps freed pages inside its arenas unless asked to return them.
#define NAPI_EXPERIMENTAL
#include <node_api.h>
#include <v8.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

// The bundle is under 1 MB; anything far larger is not what this is for.
#define MAX_SOURCE (64u << 20)

static napi_value fail(napi_env env, const char *what, int err) {
  char msg[256];
  snprintf(msg, sizeof msg, "mapSource: %s%s%s", what, err ? ": " : "", err ? strerror(err) : "");
  napi_throw_error(env, NULL, msg);
  return NULL;
}

static napi_value MapSource(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_valuetype type = napi_undefined;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1) return fail(env, "no path", 0);
  napi_typeof(env, argv[0], &type);
  if (type != napi_string) return fail(env, "the path must be a string", 0);
  char path[4096];
  size_t len = 0;
  napi_get_value_string_utf8(env, argv[0], path, sizeof path, &len);
  if (len == 0 || len >= sizeof path - 1 || strlen(path) != len) return fail(env, "bad path", 0);

  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return fail(env, "open", errno);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return fail(env, "fstat", e);
  }
  if (!S_ISREG(st.st_mode) || st.st_size <= 0 || (uint64_t)st.st_size > MAX_SOURCE) {
    close(fd);
    return fail(env, "not a regular file of a sensible size", 0);
  }
  size_t size = (size_t)st.st_size;
  unsigned char *p = static_cast<unsigned char *>(mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0));
  int e = errno;
  close(fd);
  if (p == MAP_FAILED) return fail(env, "mmap", e);
  for (size_t i = 0; i < size; i++) {
    if (p[i] > 0x7f) {
      munmap(p, size);
      return fail(env, "the file holds a byte that is not ASCII", 0);
    }
  }
  napi_value out;
  bool copied = false;
  // A generic lambda: the finalizer's env parameter is napi_env or node_api_basic_env depending on the
  // node 20 release whose headers build this.
  auto unmap = [](auto, void *data, void *hint) { munmap(data, (size_t)(uintptr_t)hint); };
  if (node_api_create_external_string_latin1(env, (char *)p, size, unmap, (void *)(uintptr_t)size, &out,
                                             &copied) != napi_ok) {
    munmap(p, size);
    return fail(env, "V8 refused the string", 0);
  }
  // Copied (V8 keeps short strings on its heap): node has already called unmap.
  (void)copied;
  return out;
}

static napi_value ReduceHeap(napi_env env, napi_callback_info info) {
  (void)info;
  // N-API calls run on the JavaScript thread, inside the isolate.
  v8::Isolate *isolate = v8::Isolate::GetCurrent();
  if (isolate == nullptr) {
    napi_throw_error(env, NULL, "reduceHeap: no isolate");
    return NULL;
  }
  isolate->LowMemoryNotification();
  return NULL;
}

static napi_value MallocTrim(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out;
  napi_create_int32(env, malloc_trim(0), &out);
  return out;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "mapSource", NAPI_AUTO_LENGTH, MapSource, NULL, &fn);
  napi_set_named_property(env, exports, "mapSource", fn);
  napi_create_function(env, "reduceHeap", NAPI_AUTO_LENGTH, ReduceHeap, NULL, &fn);
  napi_set_named_property(env, exports, "reduceHeap", fn);
  napi_create_function(env, "mallocTrim", NAPI_AUTO_LENGTH, MallocTrim, NULL, &fn);
  napi_set_named_property(env, exports, "mallocTrim", fn);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
