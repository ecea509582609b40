#include <stdio.h>
#include <unistd.h>

__attribute__((noipa)) static const char *greeting(void)
{
	return "greetings v1";
}

int main(void)
{
	for (;;) {
		puts(greeting());
		fflush(stdout);
		usleep(20000); /* static: the fastsleep preload cannot reach it */
	}
}
