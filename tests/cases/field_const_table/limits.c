/* The most common shape of a security fix: one value in a constant table
 * changes. Every function that reads the table must see the new one. */
#include <stdio.h>
#include <unistd.h>

static const int max_len[4] = { 16, 32, 64, 4096 };

__attribute__((noipa)) int limit_for(int kind)
{
	return max_len[kind & 3];
}

int main(void)
{
	for (;;) {
		printf("limit(3)=%d\n", limit_for(3));
		fflush(stdout);
		usleep(1000000);
	}
}
