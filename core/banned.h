/*
 * banned.h - functions that are too easy to misuse are compile errors in
 * clipdex sources (the idea is git's banned.h).  Use snprintf, memcpy with
 * an explicit size, strtol with end-pointer checks, strtok_r ...
 */
#ifndef CDX_BANNED_H
#define CDX_BANNED_H
#define CDX_BANNED(func) sorry_##func##_is_banned_in_clipdex
#undef strcpy
#define strcpy(x, y) CDX_BANNED(strcpy)
#undef strcat
#define strcat(x, y) CDX_BANNED(strcat)
#undef strncpy
#define strncpy(x, y, n) CDX_BANNED(strncpy)
#undef sprintf
#define sprintf(...) CDX_BANNED(sprintf)
#undef vsprintf
#define vsprintf(...) CDX_BANNED(vsprintf)
#undef strtok
#define strtok(x, y) CDX_BANNED(strtok)
#undef gets
#define gets(x) CDX_BANNED(gets)
#undef atoi
#define atoi(x) CDX_BANNED(atoi)
#endif
