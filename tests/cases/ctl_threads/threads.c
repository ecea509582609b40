#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

/*
 * Eight threads call the patched function at once. Each line carries the
 * thread's number and its own sequence number, so a test can tell that no
 * call was lost or doubled across any number of patch/unpatch cycles.
 */
__attribute__((noipa)) void work(long id, long seq)
{
	printf("old %ld %ld\n", id, seq);
}

static void *run(void *arg)
{
	for (long seq = 0;; seq++) {
		work((long)arg, seq);
		sleep(1);
	}
	return NULL;
}

int main(void)
{
	pthread_t t[8];

	for (long i = 0; i < 8; i++)
		pthread_create(&t[i], NULL, run, (void *)i);
	for (;;)
		sleep(100);
}
