#include <stdio.h>
#include <unistd.h>

/*
 * Thread-locals of both kinds: one of the executable (local-exec, TPOFF32)
 * and one of a library (initial-exec through the executable's GOT,
 * GOTTPOFF). The patched function keeps counting in both.
 */
extern __thread int lib_counter;
__thread int exe_counter = 100;

__attribute__((noipa)) void tick(void)
{
	lib_counter++;
	exe_counter++;
	printf("old %d %d\n", lib_counter, exe_counter);
}

int main(void)
{
	for (;;) {
		tick();
		sleep(1);
	}
}
