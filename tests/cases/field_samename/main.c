#include <stdio.h>
#include <unistd.h>

int user_ok(const char *name);
int group_ok(const char *name);

int main(void)
{
	for (;;) {
		printf("user ../root ok=%d group ../root ok=%d\n", user_ok("../root"), group_ok("../root"));
		fflush(stdout);
		usleep(1000000);
	}
}
