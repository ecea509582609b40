#include <stdio.h>
#include <unistd.h>
const char *util_name(void);
int main(void)
{
	for (;;) {
		puts(util_name());
		fflush(stdout);
		usleep(1000000);
	}
}
