#include <stdio.h>

static int internal_scale(int v)
{
	return v;
}

int fmt_reply(char *dst, int dstlen, const char *word, int n, int code)
{
	return snprintf(dst, dstlen, "word=%s len=%d code=%d", word, n, internal_scale(code));
}
