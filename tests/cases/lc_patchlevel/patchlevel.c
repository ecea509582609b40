#include <stdio.h>
#include <unistd.h>

extern const char *greeting(char *buf, size_t n);

__attribute__((noipa)) const char *welcome(void)
{
	return "UNPATCHED binary";
}

int main(void)
{
	char buf[128];

	while (1) {
		printf("%s, welcome from %s\n", greeting(buf, sizeof(buf)), welcome());
		sleep(1);
	}
}
