#include "parse.h"
static const int codes[8] = { 10, 20, 30, 40, 50, 60, 70, 80 };
int lookup_code(int c)
{
	return codes[c & 7];
}
