/* Native target: a SIGTERM handler sets a flag; main leaves its loop and exits 0.
 * Expected under `check --no-agent`: clean. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_term(int sig) { (void)sig; stop = 1; }

int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigprocmask(SIG_BLOCK, &block, &old);
    sigaction(SIGTERM, &sa, NULL);
    printf("READY\n");
    fflush(stdout);
    while (!stop) sigsuspend(&old); /* no lost wake-up: SIGTERM only arrives in here */
    printf("STOPPED\n");
    return 0;
}
