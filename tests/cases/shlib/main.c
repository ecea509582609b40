#include <unistd.h>

void foo_hello(void);

int main(void)
{
	while (1) {
		foo_hello();
		sleep(1);
	}
}
