#include <stdio.h>
#include <string.h>

__attribute__((visibility("hidden"), noipa)) int check_len(const char *s)
{
	return strlen(s) < 100;
}

__attribute__((visibility("default"))) void lib_report(const char *s)
{
	printf("len ok=%d for %s\n", check_len(s), s);
}
