/* Four worker threads dispatch each message through a handler table of
 * function pointers filled before main starts the threads. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct handler {
	const char *name;
	int (*fn)(const char *msg, char *out, size_t n);
};

static int on_echo(const char *msg, char *out, size_t n)
{
	return snprintf(out, n, "echo:%s", msg);
}

static struct handler handlers[] = {
	{ "echo", on_echo },
};

static int dispatch(const char *name, const char *msg, char *out, size_t n)
{
	for (size_t i = 0; i < sizeof handlers / sizeof handlers[0]; i++)
		if (strcmp(handlers[i].name, name) == 0)
			return handlers[i].fn(msg, out, n);
	return -1;
}

static void *worker(void *arg)
{
	char out[64];
	for (;;) {
		if (dispatch("echo", arg, out, sizeof out) > 0)
			puts(out);
		usleep(1000000);
	}
	return NULL;
}

int main(void)
{
	pthread_t t[4];
	for (int i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, worker, "ping<script>");
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	return 0;
}
