// Where a process's heap peak comes from, for bench/rss_breakdown.sh (no heaptrack here).
// LD_PRELOAD'ed: counts the bytes in use (malloc_usable_size of every live block) and, each
// time the peak grows by another 256 KiB, appends the new peak, the time, the thread and the
// allocating backtrace to $PEAK_OUT. The last record is the whole-run peak; the script
// attributes each step to the first lifecycle-top source line in its backtrace.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <malloc.h>
#include <execinfo.h>
#include <unistd.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <time.h>
static void *(*rmalloc)(size_t), *(*rcalloc)(size_t,size_t), *(*rrealloc)(void*,size_t);
static void (*rfree)(void*);
static void *(*raligned)(size_t,size_t);
static int (*rposix_memalign)(void**,size_t,size_t);
static _Atomic long cur, peak, lastdump;
static __thread int inhook;
static int fd = -1;
static char tmpbuf[65536]; static size_t tmppos;
static void init(void) {
  rmalloc = dlsym(RTLD_NEXT, "malloc"); rcalloc = dlsym(RTLD_NEXT, "calloc");
  rrealloc = dlsym(RTLD_NEXT, "realloc"); rfree = dlsym(RTLD_NEXT, "free");
  raligned = dlsym(RTLD_NEXT, "aligned_alloc"); rposix_memalign = dlsym(RTLD_NEXT, "posix_memalign");
}
static void track(long d) {
  long c = atomic_fetch_add(&cur, d) + d;
  long p = atomic_load(&peak);
  while (c > p && !atomic_compare_exchange_weak(&peak, &p, c)) {}
  if (c > p && c - atomic_load(&lastdump) > 262144 && !inhook) {
    inhook = 1;
    atomic_store(&lastdump, c);
    if (fd < 0) { const char *f = getenv("PEAK_OUT"); fd = open(f ? f : "/tmp/heap_peak.out", O_WRONLY|O_CREAT|O_TRUNC|O_APPEND, 0644); }
    struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts);
    char b[128]; int n = snprintf(b, sizeof b, "=== peak %ld bytes at %ld.%03ld tid %d delta %ld\n", c, ts.tv_sec, ts.tv_nsec/1000000, gettid(), d);
    write(fd, b, n);
    void *bt[40]; int k = backtrace(bt, 40);
    backtrace_symbols_fd(bt, k, fd);
    inhook = 0;
  }
}
void *malloc(size_t s) {
  if (!rmalloc) { if (!rfree) init(); if (!rmalloc) { void *p = tmpbuf + tmppos; tmppos += (s + 15) & ~15; return p; } }
  void *p = rmalloc(s); if (p) track(malloc_usable_size(p)); return p; }
void *calloc(size_t a, size_t b) {
  if (!rcalloc) { void *p = malloc(a*b); memset(p, 0, a*b); return p; }
  void *p = rcalloc(a, b); if (p) track(malloc_usable_size(p)); return p; }
void free(void *p) {
  if (!p || ((char*)p >= tmpbuf && (char*)p < tmpbuf + sizeof tmpbuf)) return;
  track(-(long)malloc_usable_size(p)); rfree(p); }
void *realloc(void *p, size_t s) {
  if (!rrealloc) init();
  long old = p ? (long)malloc_usable_size(p) : 0;
  void *q = rrealloc(p, s); if (q) { track(-old); track(malloc_usable_size(q)); } return q; }
void *aligned_alloc(size_t a, size_t s) { if (!raligned) init(); void *p = raligned(a, s); if (p) track(malloc_usable_size(p)); return p; }
int posix_memalign(void **r, size_t a, size_t s) { if (!rposix_memalign) init(); int e = rposix_memalign(r, a, s); if (!e) track(malloc_usable_size(*r)); return e; }
void *memalign(size_t a, size_t s) { void *p; return posix_memalign(&p, a, s) ? NULL : p; }
