#include <stdio.h>
#include <unistd.h>

/*
 * The function the patch replaces never returns: it is on the main thread's
 * stack at every moment, so no moment is safe to switch it and libcare-ctl
 * must refuse within its timeout, naming it, and leave the process as it was.
 */
__attribute__((noipa)) void spin(void)
{
	for (;;) {
		printf("spinning\n");
		sleep(1);
	}
}

int main(void)
{
	spin();
	return 0;
}
