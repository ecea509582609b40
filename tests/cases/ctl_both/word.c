/* The library half of the line; patched together with the executable's. */
const char *lib_word(void)
{
	return "old";
}
