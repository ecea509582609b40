/* Each request runs in a new short-lived thread, created all the time. */
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

__attribute__((noipa)) const char *handle(void)
{
	return "handled v1";
}

static void *request(void *arg)
{
	const char **out = arg;
	*out = handle();
	return NULL;
}

int main(void)
{
	for (unsigned long n = 0;; n++) {
		pthread_t t;
		const char *out = "?";
		pthread_create(&t, NULL, request, &out);
		pthread_join(t, NULL);
		if (n % 50 == 0) {
			puts(out);
			fflush(stdout);
		}
		usleep(1000);
	}
}
