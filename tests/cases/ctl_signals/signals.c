#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/time.h>
#include <unistd.h>

/*
 * A patient that must not notice being patched:
 * - a reader thread blocked in read() on a pipe (no byte lost, no EINTR);
 * - a 2 ms interval timer whose handler runs on a ticker thread and calls a
 *   patched function, so that function is often below a signal frame;
 * - the main thread writes one byte per line and prints what it sees:
 *   word seq bytes-read read-errors ticks handler-char
 */
static int fds[2];
static volatile long got, errors, ticks;
static volatile char seen = '-';

__attribute__((noipa)) char handler_word(void)
{
	return 'o';
}

__attribute__((noipa)) const char *word(void)
{
	return "old";
}

static void on_tick(int sig)
{
	(void)sig;
	ticks++;
	seen = handler_word();
}

static void mask_alarm(int how)
{
	sigset_t s;

	sigemptyset(&s);
	sigaddset(&s, SIGALRM);
	pthread_sigmask(how, &s, NULL);
}

static void *reader(void *arg)
{
	char c;

	(void)arg;
	for (;;) {
		ssize_t n = read(fds[0], &c, 1);

		if (n == 1)
			got++;
		else
			errors++;
	}
	return NULL;
}

static void *ticker(void *arg)
{
	(void)arg;
	mask_alarm(SIG_UNBLOCK);
	for (;;)
		pause();
	return NULL;
}

int main(void)
{
	struct sigaction sa = { .sa_handler = on_tick, .sa_flags = SA_RESTART };
	struct itimerval it = { { 0, 2000 }, { 0, 2000 } };
	pthread_t r, t;

	if (pipe(fds) != 0)
		return 1;
	mask_alarm(SIG_BLOCK);	/* inherited: only the ticker takes SIGALRM */
	sigaction(SIGALRM, &sa, NULL);
	pthread_create(&r, NULL, reader, NULL);
	pthread_create(&t, NULL, ticker, NULL);
	setitimer(ITIMER_REAL, &it, NULL);
	for (long seq = 1;; seq++) {
		if (write(fds[1], "x", 1) != 1)
			errors++;
		sleep(1);
		printf("%s %ld %ld %ld %ld %c\n", word(), seq, got, errors, ticks, seen);
	}
}
