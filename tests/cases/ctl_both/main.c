#include <stdio.h>
#include <unistd.h>

/*
 * One line made of a word from the executable and one from the library: a
 * patch of both objects applied in one go never shows a mixed line.
 */
const char *lib_word(void);

__attribute__((noipa)) const char *exe_word(void)
{
	return "old";
}

int main(void)
{
	for (;;) {
		printf("%s %s\n", exe_word(), lib_word());
		sleep(1);
	}
}
