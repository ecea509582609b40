/* A prefork-style server: on SIGUSR1 the parent forks a worker. Workers
 * forked after the patch inherit it with the parent's memory. */
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <unistd.h>

static volatile sig_atomic_t want_child;

static void on_usr1(int sig)
{
	(void)sig;
	want_child = 1;
}

__attribute__((noipa)) const char *banner(void)
{
	return "worker v1";
}

int main(void)
{
	signal(SIGUSR1, on_usr1);
	int is_child = 0;
	for (;;) {
		if (want_child && !is_child) {
			want_child = 0;
			if (fork() == 0) {
				prctl(PR_SET_PDEATHSIG, SIGKILL);
				is_child = 1;
			}
		}
		printf("%s %s\n", is_child ? "child" : "parent", banner());
		fflush(stdout);
		usleep(1000000);
	}
}
