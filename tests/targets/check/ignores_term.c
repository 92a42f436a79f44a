/* Native target: ignores SIGTERM, one extra thread blocked in pthread_join's peer
 * (a thread waiting on a condition that never comes). Prints READY.
 * Expected under `check --no-agent`: NOT clean (budget overrun, SIGKILL). */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

static void *waiter(void *arg) {
    (void)arg;
    pthread_mutex_lock(&mu);
    for (;;) pthread_cond_wait(&cv, &mu);
    return NULL;
}

int main(void) {
    pthread_t t;
    signal(SIGTERM, SIG_IGN);
    if (pthread_create(&t, NULL, waiter, NULL) != 0) return 2;
    printf("READY\n");
    fflush(stdout);
    pthread_join(t, NULL);
    return 0;
}
