/* Test/bench target for lifecycle-top stacks: threads blocked forever in named functions.
 * argv[1] = extra threads blocked in c_parked_on_condvar (the benchmark uses 100);
 * argv[2] = "vfork" adds a thread in state D (vfork parent).
 * Prints "ready" once every thread is started; dies with its parent (PR_SET_PDEATHSIG). */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <unistd.h>

static pthread_mutex_t held = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t cm = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t never = PTHREAD_COND_INITIALIZER;
static int fds[2];

__attribute__((noinline)) void c_blocked_on_mutex(void) {
    pthread_mutex_lock(&held);
    __asm__ volatile("" ::: "memory");
}
__attribute__((noinline)) void c_blocked_in_sleep(void) {
    for (;;) sleep(100000);
}
__attribute__((noinline)) void c_blocked_on_pipe(void) {
    char b[8];
    ssize_t n = read(fds[0], b, sizeof b);
    __asm__ volatile("" :: "r"(n) : "memory");
}
__attribute__((noinline)) void c_parked_on_condvar(void) {
    pthread_mutex_lock(&cm);
    for (;;) pthread_cond_wait(&never, &cm);
}

/* A vfork parent waits in state D until the child execs or exits: the one thread lifecycle-top
 * must never interrupt. The child only pauses (and dies with its parent thread). */
__attribute__((noinline)) void c_stuck_in_vfork(void) {
    pid_t p = vfork();
    if (p == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        for (;;) pause();
    }
}

static void *run(void *arg) {
    ((void (*)(void))arg)();
    return NULL;
}

static void start(const char *name, void (*f)(void)) {
    pthread_t t;
    if (pthread_create(&t, NULL, run, (void *)f) != 0) { perror("pthread_create"); exit(1); }
    pthread_setname_np(t, name);
}

int main(int argc, char **argv) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int extra = argc > 1 ? atoi(argv[1]) : 0;
    if (pipe(fds) != 0) { perror("pipe"); return 1; }
    pthread_mutex_lock(&held);
    start("c_mutex", c_blocked_on_mutex);
    start("c_sleep", c_blocked_in_sleep);
    start("c_pipe", c_blocked_on_pipe);
    for (int i = 0; i < extra; i++) start("c_parked", c_parked_on_condvar);
    if (argc > 2 && argv[2][0] == 'v') start("c_vfork", c_stuck_in_vfork);
    printf("ready\n");
    fflush(stdout);
    for (;;) pause();
}
