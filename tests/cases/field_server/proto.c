/* The protocol's answers, apart from the connection loop that runs
 * forever: only a function that returns can be replaced live. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

void answer(const char *word, char *out, size_t n)
{
	snprintf(out, n, "%s", word);
}
