#include <stdio.h>
#include <unistd.h>

extern void print_greetings(void);

int main(void)
{
	while (1) {
		print_greetings();
		sleep(1);
	}
}
