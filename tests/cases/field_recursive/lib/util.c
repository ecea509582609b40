const char *util_name(void)
{
	return "util v1";
}
