#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/*
 * The patched function calls a slow one and spends nearly all its time
 * below it, so once patched a thread sits inside the patch code: the stack
 * walk has to go through the patch's own frame (its .kpatch.eh_frame) to
 * tell unpatch which function is busy and where it returns. The nap length
 * (microseconds) is read from the file $NAP_FILE before each nap.
 */
static volatile int calls;

__attribute__((noipa)) void nap(void)
{
	long us = 1000000;
	const char *path = getenv("NAP_FILE");
	FILE *f = path ? fopen(path, "r") : NULL;
	if (f) {
		if (fscanf(f, "%ld", &us) != 1)
			us = 1000000;
		fclose(f);
	}
	usleep(us);
	calls++;	/* no tail call */
}

__attribute__((noipa)) void work(void)
{
	printf("before\n");
	nap();
	calls++;	/* no tail call: work() stays on the stack below nap() */
}

int main(void)
{
	for (;;)
		work();
}
