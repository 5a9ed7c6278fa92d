/* cmd_check.c - placeholder until the store lands (issue: index store). */
#include "cmd.h"
int cmd_check(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return error("check: the index store is not implemented yet");
}
