#include <string.h>

/* Both files have a file-static validate(); the fix changes the one in groups.c. */
__attribute__((noipa)) static int validate(const char *s)
{
	return strlen(s) > 0;
}

int user_ok(const char *name)
{
	return validate(name);
}
