/* Stands in for a debugger in tests/stacks_seize.rs: PTRACE_SEIZEs thread argv[1] (no stop)
 * and waits; dies with its parent, which detaches the thread. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <unistd.h>

int main(int argc, char **argv) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (argc < 2 || ptrace(PTRACE_SEIZE, atoi(argv[1]), 0, 0) != 0) { perror("seize"); return 1; }
    printf("ready\n");
    fflush(stdout);
    for (;;) pause();
}
