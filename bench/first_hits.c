/* Which functions of a program run, in the order they first run: a bench tool for
 * bench/symbol_order.py (not part of lifecycle-top, which never breakpoints a target).
 *
 *     first_hits ADDRS OUT -- PROGRAM ARGS...
 *
 * ADDRS: one hex offset per line (a function's address in the ELF file, as `nm` prints it
 * for a PIE). Runs PROGRAM under ptrace with a one-shot breakpoint (int3) at every address;
 * a breakpoint that is hit is restored, its offset appended to OUT, and the thread resumed at
 * it. Every thread is followed (PTRACE_O_TRACECLONE); the program is killed if this tool
 * dies (PTRACE_O_EXITKILL). Ends when PROGRAM exits, with its exit status. Only for a program
 * it starts itself: breakpoints are written into the program's own private copy of its code
 * through /proc/PID/mem. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

struct bp {
    uint64_t off;
    unsigned char orig;
    int armed;
};

static struct bp *bps;
static size_t nbps;

static int by_off(const void *a, const void *b) {
    uint64_t x = ((const struct bp *)a)->off, y = ((const struct bp *)b)->off;
    return x < y ? -1 : x > y;
}

static struct bp *find(uint64_t off) {
    struct bp key = {.off = off};
    return bsearch(&key, bps, nbps, sizeof *bps, by_off);
}

/* The load address of the program's first mapping (file offset 0). */
static uint64_t load_base(pid_t pid, const char *exe) {
    char path[64], line[8192], real[4096];
    snprintf(path, sizeof path, "/proc/%d/maps", pid);
    if (!realpath(exe, real)) return 0;
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    uint64_t base = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, off;
        char file[4096] = "";
        if (sscanf(line, "%lx-%*x %*s %lx %*s %*s %4095s", &lo, &off, file) >= 2 && off == 0 &&
            strcmp(file, real) == 0) {
            base = lo;
            break;
        }
    }
    fclose(f);
    return base;
}

int main(int argc, char **argv) {
    if (argc < 5 || strcmp(argv[3], "--") != 0) {
        fprintf(stderr, "usage: first_hits ADDRS OUT -- PROGRAM ARGS...\n");
        return 2;
    }
    FILE *in = fopen(argv[1], "r");
    if (!in) {
        perror(argv[1]);
        return 2;
    }
    size_t cap = 1024;
    bps = calloc(cap, sizeof *bps);
    char line[256];
    while (fgets(line, sizeof line, in)) {
        if (nbps == cap) bps = realloc(bps, (cap *= 2) * sizeof *bps);
        bps[nbps++].off = strtoull(line, NULL, 16);
    }
    fclose(in);
    qsort(bps, nbps, sizeof *bps, by_off);
    FILE *out = fopen(argv[2], "w");
    if (!out) {
        perror(argv[2]);
        return 2;
    }
    pid_t child = fork();
    if (child == 0) {
        ptrace(PTRACE_TRACEME, 0, 0, 0);
        execvp(argv[4], argv + 4);
        perror(argv[4]);
        _exit(127);
    }
    int status;
    if (waitpid(child, &status, 0) != child || !WIFSTOPPED(status)) {
        fprintf(stderr, "first_hits: %s did not start\n", argv[4]);
        return 2;
    }
    ptrace(PTRACE_SETOPTIONS, child, 0,
           PTRACE_O_TRACECLONE | PTRACE_O_EXITKILL | PTRACE_O_TRACEEXEC);
    uint64_t base = load_base(child, argv[4]);
    char mem_path[64];
    snprintf(mem_path, sizeof mem_path, "/proc/%d/mem", child);
    int mem = open(mem_path, O_RDWR);
    if (mem < 0 || base == 0) {
        fprintf(stderr, "first_hits: cannot read the program's memory or maps\n");
        return 2;
    }
    unsigned char int3 = 0xcc;
    size_t armed = 0;
    for (size_t i = 0; i < nbps; i++) {
        if (pread(mem, &bps[i].orig, 1, base + bps[i].off) == 1 &&
            pwrite(mem, &int3, 1, base + bps[i].off) == 1) {
            bps[i].armed = 1;
            armed++;
        }
    }
    fprintf(stderr, "first_hits: %zu of %zu breakpoints armed\n", armed, nbps);
    ptrace(PTRACE_CONT, child, 0, 0);
    int code = 0;
    for (;;) {
        pid_t t = waitpid(-1, &status, __WALL);
        if (t < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (WIFEXITED(status) || WIFSIGNALED(status)) {
            if (t == child) code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            continue;
        }
        if (!WIFSTOPPED(status)) continue;
        int sig = WSTOPSIG(status);
        int event = status >> 16;
        int deliver = 0;
        if (event != 0) {
            /* clone/exec events: nothing to do */
        } else if (sig == SIGTRAP) {
            struct user_regs_struct regs;
            if (ptrace(PTRACE_GETREGS, t, 0, &regs) == 0) {
                uint64_t off = regs.rip - 1 - base;
                struct bp *b = find(off);
                if (b) {
                    if (b->armed) {
                        pwrite(mem, &b->orig, 1, base + off);
                        b->armed = 0;
                        fprintf(out, "%lx\n", (unsigned long)off);
                    }
                    /* Also when another thread restored it first. */
                    regs.rip -= 1;
                    ptrace(PTRACE_SETREGS, t, 0, &regs);
                } else {
                    deliver = sig;
                }
            }
        } else if (sig == SIGSTOP) {
            /* a new thread's first stop */
        } else {
            deliver = sig;
        }
        ptrace(PTRACE_CONT, t, 0, deliver);
    }
    fclose(out);
    return code;
}
