#include <unistd.h>

void lib_report(const char *s);

int main(void)
{
	for (;;) {
		lib_report("AAAA");
		usleep(1000000);
	}
}
