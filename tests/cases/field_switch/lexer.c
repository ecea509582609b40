/* A token classifier with a dense switch: gcc -O2 compiles it to a jump
 * table of relative offsets in .rodata. */
#include <stdio.h>
#include <unistd.h>

__attribute__((noipa)) int classify(int c)
{
	switch (c) {
	case 'a': return 1;
	case 'b': return 2;
	case 'c': return 3;
	case 'd': return 4;
	case 'e': return 5;
	case 'f': return 6;
	case 'g': return 7;
	case 'h': return 8;
	case 'i': return 9;
	case 'j': return 10;
	default: return 0;
	}
}

int main(void)
{
	for (;;) {
		printf("a=%d e=%d j=%d z=%d\n", classify('a'), classify('e'), classify('j'), classify('z'));
		fflush(stdout);
		usleep(1000000);
	}
}
