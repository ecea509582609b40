#include <stdio.h>

static int calls;

void foo_hello(void)
{
	calls++;
	printf("hello from libfoo\n");
}
