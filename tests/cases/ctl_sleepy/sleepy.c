#include <stdio.h>
#include <unistd.h>

/*
 * The patched function is where the program spends nearly all its time: it
 * sleeps inside it and is outside it only between two calls. Sampling would
 * almost never catch a safe moment; a breakpoint on its return address does.
 */
static volatile int calls;

__attribute__((noipa)) void slow(void)
{
	printf("old\n");
	sleep(1);
	calls++;	/* no tail call: slow() stays on the stack while it sleeps */
}

int main(void)
{
	for (;;)
		slow();
}
