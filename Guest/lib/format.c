#include "malv/format.h"

#include <stdbool.h>
#include <stdint.h>

#include "malv/string.h"

struct spec {
    bool left, plus, space, alt, zero;
    int width;
    int prec; /* -1: not given */
};

struct out {
    format_sink sink;
    void *ctx;
    int count;
};

static void put(struct out *o, char c)
{
    o->sink(o->ctx, c);
    o->count++;
}

static void put_repeat(struct out *o, char c, int n)
{
    while (n-- > 0)
        put(o, c);
}

/*
 * Lays out [sign/prefix][zeros][body] in the field width, the way C's printf
 * does. `zeros` are the leading zeros a precision asks for.
 */
static void put_field(struct out *o, const struct spec *s, const char *prefix, int zeros,
                      const char *body, int body_len)
{
    int prefix_len = (int)strlen(prefix);
    int len = prefix_len + zeros + body_len;
    int pad = s->width > len ? s->width - len : 0;

    if (!s->left && !s->zero)
        put_repeat(o, ' ', pad);
    for (const char *p = prefix; *p; p++)
        put(o, *p);
    if (!s->left && s->zero)
        put_repeat(o, '0', pad);
    put_repeat(o, '0', zeros);
    for (int i = 0; i < body_len; i++)
        put(o, body[i]);
    if (s->left)
        put_repeat(o, ' ', pad);
}

static void format_int(struct out *o, struct spec s, uint64_t v, bool negative, unsigned base,
                       bool upper, const char *alt_prefix)
{
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    char buf[24];
    int n = 0;

    /* "%.0d" of zero prints nothing, as in C. */
    if (!(v == 0 && s.prec == 0)) {
        do {
            buf[sizeof buf - 1 - n++] = digits[v % base];
            v /= base;
        } while (v);
    }

    char prefix[4] = "";
    int p = 0;
    if (negative)
        prefix[p++] = '-';
    else if (s.plus)
        prefix[p++] = '+';
    else if (s.space)
        prefix[p++] = ' ';
    if (alt_prefix && n > 0)
        for (const char *a = alt_prefix; *a; a++)
            prefix[p++] = *a;
    prefix[p] = '\0';

    int zeros = s.prec > n ? s.prec - n : 0;
    if (s.prec >= 0)
        s.zero = false;
    put_field(o, &s, prefix, zeros, buf + sizeof buf - n, n);
}

/* Appends the decimal digits of v to buf; returns the new length. */
static int append_u64(char *buf, int len, uint64_t v)
{
    char tmp[20];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        buf[len++] = tmp[--n];
    return len;
}

static int append_fraction(char *buf, int len, double frac, int prec)
{
    for (int i = 0; i < prec; i++) {
        frac *= 10.0;
        int d = (int)frac;
        if (d > 9)
            d = 9;
        buf[len++] = (char)('0' + d);
        frac -= d;
    }
    return len;
}

/*
 * %f and %e, accurate to about 15 significant digits: enough for reporting
 * measurements, not for round-tripping doubles. Values too large for %f's
 * integer part fall back to %e.
 */
static void format_float(struct out *o, struct spec s, double v, char conv)
{
    bool upper = conv == 'F' || conv == 'E';
    bool negative = __builtin_signbit(v);
    if (negative)
        v = -v;
    char prefix[2] = { negative ? '-' : s.plus ? '+' : s.space ? ' ' : '\0', '\0' };
    char buf[64];
    int len = 0;

    if (__builtin_isnan(v) || __builtin_isinf(v)) {
        const char *word = __builtin_isnan(v) ? (upper ? "NAN" : "nan") : (upper ? "INF" : "inf");
        s.zero = false;
        put_field(o, &s, prefix, 0, word, 3);
        return;
    }

    int prec = s.prec < 0 ? 6 : s.prec > 17 ? 17 : s.prec;
    double half = 0.5;
    for (int i = 0; i < prec; i++)
        half /= 10.0;

    if ((conv == 'f' || conv == 'F') && v + half < 1e18) {
        v += half;
        uint64_t ip = (uint64_t)v;
        len = append_u64(buf, len, ip);
        if (prec > 0 || s.alt)
            buf[len++] = '.';
        len = append_fraction(buf, len, v - (double)ip, prec);
    } else {
        int exp = 0;
        if (v != 0.0) {
            while (v >= 10.0) {
                v /= 10.0;
                exp++;
            }
            while (v < 1.0) {
                v *= 10.0;
                exp--;
            }
            v += half;
            if (v >= 10.0) {
                v /= 10.0;
                exp++;
            }
        }
        int d = (int)v;
        buf[len++] = (char)('0' + d);
        if (prec > 0 || s.alt)
            buf[len++] = '.';
        len = append_fraction(buf, len, v - d, prec);
        buf[len++] = upper ? 'E' : 'e';
        buf[len++] = exp < 0 ? '-' : '+';
        unsigned ue = (unsigned)(exp < 0 ? -exp : exp);
        if (ue < 10)
            buf[len++] = '0';
        len = append_u64(buf, len, ue);
    }
    put_field(o, &s, prefix, 0, buf, len);
}

enum length { LEN_INT, LEN_CHAR, LEN_SHORT, LEN_LONG, LEN_LLONG, LEN_SIZE, LEN_MAX, LEN_PTRDIFF };

static uint64_t arg_unsigned(va_list *ap, enum length len)
{
    switch (len) {
    case LEN_CHAR: return (unsigned char)va_arg(*ap, unsigned);
    case LEN_SHORT: return (unsigned short)va_arg(*ap, unsigned);
    case LEN_LONG: return va_arg(*ap, unsigned long);
    case LEN_LLONG: return va_arg(*ap, unsigned long long);
    case LEN_SIZE: return va_arg(*ap, size_t);
    case LEN_MAX: return va_arg(*ap, uintmax_t);
    case LEN_PTRDIFF: return (uint64_t)va_arg(*ap, ptrdiff_t);
    default: return va_arg(*ap, unsigned);
    }
}

static int64_t arg_signed(va_list *ap, enum length len)
{
    switch (len) {
    case LEN_CHAR: return (signed char)va_arg(*ap, int);
    case LEN_SHORT: return (short)va_arg(*ap, int);
    case LEN_LONG: return va_arg(*ap, long);
    case LEN_LLONG: return va_arg(*ap, long long);
    case LEN_SIZE: return (int64_t)va_arg(*ap, size_t);
    case LEN_MAX: return va_arg(*ap, intmax_t);
    case LEN_PTRDIFF: return va_arg(*ap, ptrdiff_t);
    default: return va_arg(*ap, int);
    }
}

int vformat(format_sink sink, void *ctx, const char *fmt, va_list ap_in)
{
    struct out o = { sink, ctx, 0 };
    va_list ap;
    va_copy(ap, ap_in);

    for (const char *f = fmt; *f; f++) {
        if (*f != '%') {
            put(&o, *f);
            continue;
        }
        f++;

        struct spec s = { .prec = -1 };
        for (;; f++) {
            if (*f == '-') s.left = true;
            else if (*f == '+') s.plus = true;
            else if (*f == ' ') s.space = true;
            else if (*f == '#') s.alt = true;
            else if (*f == '0') s.zero = true;
            else break;
        }
        if (*f == '*') {
            s.width = va_arg(ap, int);
            if (s.width < 0) {
                s.left = true;
                s.width = -s.width;
            }
            f++;
        } else {
            while (*f >= '0' && *f <= '9')
                s.width = s.width * 10 + (*f++ - '0');
        }
        if (*f == '.') {
            f++;
            s.prec = 0;
            if (*f == '*') {
                s.prec = va_arg(ap, int);
                f++;
            } else {
                while (*f >= '0' && *f <= '9')
                    s.prec = s.prec * 10 + (*f++ - '0');
            }
        }
        if (s.left)
            s.zero = false;

        enum length len = LEN_INT;
        switch (*f) {
        case 'h':
            len = LEN_SHORT;
            if (*++f == 'h') {
                len = LEN_CHAR;
                f++;
            }
            break;
        case 'l':
            len = LEN_LONG;
            if (*++f == 'l') {
                len = LEN_LLONG;
                f++;
            }
            break;
        case 'z': len = LEN_SIZE; f++; break;
        case 'j': len = LEN_MAX; f++; break;
        case 't': len = LEN_PTRDIFF; f++; break;
        }

        switch (*f) {
        case 'd':
        case 'i': {
            int64_t v = arg_signed(&ap, len);
            format_int(&o, s, v < 0 ? -(uint64_t)v : (uint64_t)v, v < 0, 10, false, NULL);
            break;
        }
        case 'u':
            format_int(&o, s, arg_unsigned(&ap, len), false, 10, false, NULL);
            break;
        case 'x':
        case 'X': {
            uint64_t v = arg_unsigned(&ap, len);
            const char *alt = s.alt && v ? (*f == 'x' ? "0x" : "0X") : NULL;
            format_int(&o, s, v, false, 16, *f == 'X', alt);
            break;
        }
        case 'o':
            format_int(&o, s, arg_unsigned(&ap, len), false, 8, false, s.alt ? "0" : NULL);
            break;
        case 'p':
            s.alt = true;
            format_int(&o, s, (uintptr_t)va_arg(ap, void *), false, 16, false, "0x");
            break;
        case 'c': {
            char c = (char)va_arg(ap, int);
            s.zero = false;
            put_field(&o, &s, "", 0, &c, 1);
            break;
        }
        case 's': {
            const char *str = va_arg(ap, const char *);
            if (!str)
                str = "(null)";
            int n = (int)(s.prec >= 0 ? strnlen(str, (size_t)s.prec) : strlen(str));
            s.zero = false;
            put_field(&o, &s, "", 0, str, n);
            break;
        }
        case 'f':
        case 'F':
        case 'e':
        case 'E':
            format_float(&o, s, va_arg(ap, double), *f);
            break;
        case '%':
            put(&o, '%');
            break;
        case '\0':
            f--; /* a lone '%' at the end: stop at the terminator */
            break;
        default:
            /* Unknown conversion: print it as written so the mistake shows. */
            put(&o, '%');
            put(&o, *f);
            break;
        }
    }
    va_end(ap);
    return o.count;
}

struct buffer {
    char *buf;
    size_t size, len;
};

static void buffer_sink(void *ctx, char c)
{
    struct buffer *b = ctx;
    if (b->len + 1 < b->size)
        b->buf[b->len] = c;
    b->len++;
}

int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
    struct buffer b = { buf, size, 0 };
    int n = vformat(buffer_sink, &b, fmt, ap);
    if (size > 0)
        buf[b.len < size ? b.len : size - 1] = '\0';
    return n;
}

int snprintf(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return n;
}
