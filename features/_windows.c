/* The windowed features of one payment, from its entities' histories, in C.

   `features/online.py` plans, once per feature set, which windows each entity's history is cut
   at and which aggregation fills which output slot (`_EntityPlan`); `_fill` then walks those
   plans for every payment. This is that walk without the interpreter: the same bisections,
   the same integer sums and the same floating-point operations in the same order (the parity
   tests hold it equal to the Python walk and to the batch pipeline, bit for bit). What it
   cannot do exactly it refuses with OverflowError (an int past 64 bits, a plan wider than its
   scratch, an amount statistic past 64 bits), and the caller runs the Python walk for that
   payment instead. The statistics over the window's amounts themselves (z-score, median
   ratio) are exact integer sums and one sort, then Python's float conversions.

   fill(out, t, cents, card, merchant_lat, merchant_lon, plans, hists, deg,
        earth_radius_km) -> None
     out      writable buffer of float64, one per feature (only the plans' slots are written)
     plans    tuple of (offsets, fraud_offsets, sums, ops); ops: tuple of (code, items)
     hists    list, one per plan: a History, or None (the entity is unknown: left NaN)
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>

#define MAX_SLOTS 64
#define EXACT (1LL << 53) /* ints up to this convert to double exactly */

enum { COUNT, SUM, MEAN, MEAN_RATIO, LABELS, SINCE_FIRST, PAIR_NEW, DISTINCT, PREVIOUS, AMOUNTS };

static PyObject *s_ts, *s_csum, *s_cents, *s_cards, *s_lat, *s_lon, *s_fraud_ts;

static const long long NS_PER_S = 1000000000LL;
static const long long NS_PER_DAY = 86400LL * 1000000000LL;

static int as_ll(PyObject *o, long long *v) {
    int overflow = 0;
    *v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow) {
        PyErr_SetString(PyExc_OverflowError, "an int past 64 bits");
        return -1;
    }
    if (*v == -1 && PyErr_Occurred()) return -1;
    return 0;
}

/* a - b, or OverflowError (the caller then walks the payment in Python, whose ints are exact) */
static int sub_ll(long long a, long long b, long long *out) {
    if (__builtin_sub_overflow(a, b, out)) {
        PyErr_SetString(PyExc_OverflowError, "a time difference past 64 bits");
        return -1;
    }
    return 0;
}

/* bisect.bisect_right on a list of ints (time-ordered) */
static int bisect_right(PyObject *list, long long x, Py_ssize_t *pos) {
    Py_ssize_t lo = 0, hi = PyList_GET_SIZE(list);
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        long long v;
        if (as_ll(PyList_GET_ITEM(list, mid), &v) < 0) return -1;
        if (x < v)
            hi = mid;
        else
            lo = mid + 1;
    }
    *pos = lo;
    return 0;
}

/* a / b for ints as Python's true division gives it (correctly rounded): both exact as
   doubles, one IEEE division; else Python's own. Returns -1 with an error set on failure. */
static int true_div(long long a, long long b, double *out) {
    if (a <= EXACT && a >= -EXACT && b <= EXACT && b >= -EXACT) {
        *out = (double)a / (double)b;
        return 0;
    }
    PyObject *pa = PyLong_FromLongLong(a), *pb = PyLong_FromLongLong(b), *q = NULL;
    if (pa && pb) q = PyNumber_TrueDivide(pa, pb);
    Py_XDECREF(pa);
    Py_XDECREF(pb);
    if (!q) return -1;
    *out = PyFloat_AsDouble(q);
    Py_DECREF(q);
    return (*out == -1.0 && PyErr_Occurred()) ? -1 : 0;
}

/* a value known to fit 64 bits, as Python's float(int) rounds it; past 64 bits: OverflowError
   (the caller runs the Python walk, whose ints are exact) */
static int i128_double(__int128 v, double *out) {
    if (v > (__int128)INT64_MAX || v < (__int128)INT64_MIN) {
        PyErr_SetString(PyExc_OverflowError, "an amount statistic past 64 bits");
        return -1;
    }
    *out = (double)(long long)v; /* one correctly rounded conversion, as PyLong_AsDouble */
    return 0;
}

static int cmp_ll(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

/* features.online._zscore / _median_ratio over cents[first:first + n], operation for
   operation: exact integer sums (128 bits), then the same float conversions and divisions */
static int amounts(PyObject *cents, Py_ssize_t first, Py_ssize_t n, long long mine, int z,
                   double *out) {
    if (first < 0 || n < 0 || first + n > PyList_GET_SIZE(cents)) {
        PyErr_SetString(PyExc_ValueError, "History lists differ in length");
        return -1;
    }
    if (z) {
        __int128 s = 0, sq = 0, nsq, ss, var, num;
        double dvar, dnum;
        if (n < 2) {
            *out = NAN;
            return 0;
        }
        for (Py_ssize_t c = 0; c < n; c++) {
            long long w;
            if (as_ll(PyList_GET_ITEM(cents, first + c), &w) < 0) return -1;
            s += w; /* n < 2^62 values of < 2^63 each: no overflow in 128 bits */
            if (__builtin_add_overflow(sq, (__int128)w * w, &sq)) goto overflow;
        }
        if (__builtin_mul_overflow((__int128)n, sq, &nsq) || __builtin_mul_overflow(s, s, &ss) ||
            __builtin_sub_overflow(nsq, ss, &var))
            goto overflow;
        if (var <= 0) {
            *out = NAN;
            return 0;
        }
        if (__builtin_mul_overflow((__int128)n, (__int128)mine, &num) ||
            __builtin_sub_overflow(num, s, &num))
            goto overflow;
        if (i128_double(var, &dvar) < 0 || i128_double(num, &dnum) < 0) return -1;
        *out = dnum / sqrt(dvar);
        return 0;
    } else {
        long long small[256], *buf = small;
        double med;
        if (n == 0) {
            *out = NAN;
            return 0;
        }
        if (n > 256 && !(buf = PyMem_Malloc((size_t)n * sizeof(long long)))) {
            PyErr_NoMemory();
            return -1;
        }
        for (Py_ssize_t c = 0; c < n; c++) {
            if (as_ll(PyList_GET_ITEM(cents, first + c), &buf[c]) < 0) {
                if (buf != small) PyMem_Free(buf);
                return -1;
            }
        }
        qsort(buf, (size_t)n, sizeof(long long), cmp_ll);
        __int128 mid = (__int128)buf[(n - 1) / 2] + buf[n / 2];
        if (buf != small) PyMem_Free(buf);
        if (i128_double(mid, &med) < 0) return -1;
        med /= 2.0; /* exact: (a + b) / 2 as Python's int true division rounds it */
        *out = med > 0 ? (double)mine / med : NAN;
        return 0;
    }
overflow:
    PyErr_SetString(PyExc_OverflowError, "an amount statistic past 128 bits");
    return -1;
}

/* libm's pow, called as Python's `x ** 2.0` calls it: GCC would otherwise fold pow(x, 2.0)
   into x * x, which differs from glibc's pow in the last bit for about 1 value in 1,000 */
static double (*volatile libm_pow)(double, double) = pow;

/* features.transforms.haversine_km_one, operation for operation */
static double haversine(double lat1, double lon1, double lat2, double lon2, double deg,
                        double radius) {
    double p1 = lat1 * deg, p2 = lat2 * deg;
    double dl = lon2 * deg - lon1 * deg;
    double a = libm_pow(sin((p2 - p1) / 2.0), 2.0) +
               cos(p1) * cos(p2) * libm_pow(sin(dl / 2.0), 2.0);
    if (a > 1.0) a = 1.0;
    if (!(a >= 0.0)) return NAN;
    return 2.0 * radius * asin(sqrt(a));
}

/* a list attribute of a History (a new reference) */
static PyObject *list_attr(PyObject *h, PyObject *name) {
    PyObject *v = PyObject_GetAttr(h, name);
    if (v && !PyList_Check(v)) {
        Py_DECREF(v);
        PyErr_SetString(PyExc_TypeError, "History fields must be lists");
        return NULL;
    }
    return v;
}

static int slot_index(PyObject *items, Py_ssize_t r, Py_ssize_t c, Py_ssize_t limit,
                      Py_ssize_t *out) {
    PyObject *row = PyTuple_GET_ITEM(items, r);
    Py_ssize_t v = PyLong_AsSsize_t(PyTuple_GET_ITEM(row, c));
    if (v == -1 && PyErr_Occurred()) return -1;
    if (v < 0 || v >= limit) {
        PyErr_SetString(PyExc_IndexError, "plan slot out of range");
        return -1;
    }
    *out = v;
    return 0;
}

typedef struct {
    double *out;
    Py_ssize_t n_out;
    long long t, cents;
    PyObject *card;
    double mlat, mlon, deg, radius;
} Payment;

#define SET(i, v)                                                                 \
    do {                                                                          \
        if ((i) < 0 || (i) >= p->n_out) {                                         \
            PyErr_SetString(PyExc_IndexError, "feature index out of range");     \
            goto fail;                                                            \
        }                                                                         \
        p->out[(i)] = (v);                                                        \
    } while (0)

static int fill_entity(const Payment *p, PyObject *plan, PyObject *h) {
    PyObject *offsets = PyTuple_GET_ITEM(plan, 0), *fraud_offsets = PyTuple_GET_ITEM(plan, 1);
    int want_sums = PyObject_IsTrue(PyTuple_GET_ITEM(plan, 2));
    PyObject *ops = PyTuple_GET_ITEM(plan, 3);
    Py_ssize_t n_off = PyTuple_GET_SIZE(offsets), n_foff = PyTuple_GET_SIZE(fraud_offsets);
    Py_ssize_t starts[MAX_SLOTS], fraud[MAX_SLOTS];
    long long sums[MAX_SLOTS];
    PyObject *ts = NULL, *csum = NULL, *cents = NULL, *cards = NULL, *lat = NULL, *lon = NULL,
             *fraud_ts = NULL;
    int rc = -1;
    if (want_sums < 0) return -1;
    if (n_off > MAX_SLOTS || n_foff > MAX_SLOTS) {
        PyErr_SetString(PyExc_OverflowError, "more windows than the kernel's scratch");
        return -1;
    }
    if (!(ts = list_attr(h, s_ts))) goto fail;
    Py_ssize_t n_all = PyList_GET_SIZE(ts);
    for (Py_ssize_t w = 0; w < n_off; w++) {
        long long off, bound;
        if (as_ll(PyTuple_GET_ITEM(offsets, w), &off) < 0) goto fail;
        if (sub_ll(p->t, off, &bound) < 0) goto fail;
        if (bisect_right(ts, bound, &starts[w]) < 0) goto fail;
    }
    if (want_sums) {
        long long origin = 0, last = 0;
        if (!(csum = list_attr(h, s_csum)) || !(cents = list_attr(h, s_cents))) goto fail;
        if (n_all) {
            long long c0, k0;
            if (PyList_GET_SIZE(csum) != n_all || PyList_GET_SIZE(cents) != n_all) {
                PyErr_SetString(PyExc_ValueError, "History lists differ in length");
                goto fail;
            }
            if (as_ll(PyList_GET_ITEM(csum, 0), &c0) < 0) goto fail;
            if (as_ll(PyList_GET_ITEM(cents, 0), &k0) < 0) goto fail;
            if (as_ll(PyList_GET_ITEM(csum, n_all - 1), &last) < 0) goto fail;
            if (__builtin_sub_overflow(c0, k0, &origin)) {
                PyErr_SetString(PyExc_OverflowError, "sums past 64 bits");
                goto fail;
            }
        }
        for (Py_ssize_t w = 0; w < n_off; w++) {
            Py_ssize_t start = starts[w];
            long long before = origin;
            if (start >= n_all) {
                sums[w] = 0;
                continue;
            }
            if (start > 0 && as_ll(PyList_GET_ITEM(csum, start - 1), &before) < 0) goto fail;
            if (__builtin_sub_overflow(last, before, &sums[w])) {
                PyErr_SetString(PyExc_OverflowError, "sums past 64 bits");
                goto fail;
            }
        }
    }
    for (Py_ssize_t o = 0; o < PyTuple_GET_SIZE(ops); o++) {
        PyObject *op = PyTuple_GET_ITEM(ops, o);
        long code = PyLong_AsLong(PyTuple_GET_ITEM(op, 0));
        PyObject *items = PyTuple_GET_ITEM(op, 1);
        Py_ssize_t n_items = PyTuple_GET_SIZE(items);
        if (code == -1 && PyErr_Occurred()) goto fail;
        for (Py_ssize_t r = 0; r < n_items; r++) {
            Py_ssize_t i, k;
            if (code == LABELS) break; /* its own loop below */
            if (slot_index(items, r, 0, p->n_out, &i) < 0) goto fail;
            if (slot_index(items, r, 1, n_off, &k) < 0) goto fail;
            Py_ssize_t n = n_all - starts[k];
            double v;
            switch (code) {
            case COUNT:
                SET(i, (double)n);
                break;
            case SUM:
                if (!want_sums) goto bad_plan;
                SET(i, (double)sums[k] / 100.0);
                break;
            case MEAN:
                if (!want_sums) goto bad_plan;
                SET(i, n > 0 ? (double)sums[k] / (100.0 * (double)n) : NAN);
                break;
            case MEAN_RATIO: {
                long long num;
                if (!want_sums) goto bad_plan;
                if (n > 0 && sums[k] > 0) {
                    if (__builtin_mul_overflow(p->cents, (long long)n, &num)) {
                        PyErr_SetString(PyExc_OverflowError, "cents * n past 64 bits");
                        goto fail;
                    }
                    if (true_div(num, sums[k], &v) < 0) goto fail;
                    SET(i, v);
                } else {
                    SET(i, NAN);
                }
                break;
            }
            case SINCE_FIRST:
                if (starts[k] < n_all) {
                    long long first, age;
                    if (as_ll(PyList_GET_ITEM(ts, starts[k]), &first) < 0) goto fail;
                    if (sub_ll(p->t, first, &age) < 0) goto fail;
                    if (true_div(age, NS_PER_DAY, &v) < 0) goto fail;
                    SET(i, v);
                } else {
                    SET(i, NAN);
                }
                break;
            case PAIR_NEW:
                SET(i, starts[k] == n_all ? 1.0 : 0.0);
                break;
            case DISTINCT: {
                if (p->card == Py_None) break;
                if (!cards && !(cards = list_attr(h, s_cards))) goto fail;
                PyObject *seen = PySet_New(NULL);
                if (!seen) goto fail;
                int err = PySet_Add(seen, p->card);
                for (Py_ssize_t c = starts[k]; !err && c < n_all && c < PyList_GET_SIZE(cards);
                     c++) {
                    PyObject *item = PyList_GET_ITEM(cards, c);
                    if (item != Py_None) err = PySet_Add(seen, item);
                }
                Py_ssize_t size = PySet_GET_SIZE(seen);
                Py_DECREF(seen);
                if (err) goto fail;
                SET(i, (double)size);
                break;
            }
            case PREVIOUS: {
                long long last_ts, gap, what;
                double dt_s, dist, speed;
                if (!n_all) break;
                if (starts[k] >= n_all) break;
                if (!lat && (!(lat = list_attr(h, s_lat)) || !(lon = list_attr(h, s_lon))))
                    goto fail;
                if (PyList_GET_SIZE(lat) != n_all || PyList_GET_SIZE(lon) != n_all) {
                    PyErr_SetString(PyExc_ValueError, "History lists differ in length");
                    goto fail;
                }
                if (as_ll(PyList_GET_ITEM(ts, n_all - 1), &last_ts) < 0) goto fail;
                if (sub_ll(p->t, last_ts, &gap) < 0) goto fail;
                if (true_div(gap, NS_PER_S, &dt_s) < 0) goto fail;
                double plat = PyFloat_AsDouble(PyList_GET_ITEM(lat, n_all - 1));
                double plon = PyFloat_AsDouble(PyList_GET_ITEM(lon, n_all - 1));
                if (PyErr_Occurred()) goto fail;
                if (isinf(plat) || isinf(plon) || isinf(p->mlat) || isinf(p->mlon)) {
                    /* Python's math.sin refuses an infinity (ValueError): let it say so */
                    PyErr_SetString(PyExc_OverflowError, "an infinite coordinate");
                    goto fail;
                }
                dist = haversine(plat, plon, p->mlat, p->mlon, p->deg, p->radius);
                speed = dist / ((60.0 > dt_s ? 60.0 : dt_s) / 3600.0);
                if (as_ll(PyTuple_GET_ITEM(PyTuple_GET_ITEM(items, r), 2), &what) < 0) goto fail;
                SET(i, what == 0 ? dt_s : what == 1 ? dist : speed);
                break;
            }
            case AMOUNTS: {
                if (!cents && !(cents = list_attr(h, s_cents))) goto fail;
                int z = PyObject_IsTrue(PyTuple_GET_ITEM(PyTuple_GET_ITEM(items, r), 2));
                if (z < 0) goto fail;
                if (amounts(cents, starts[k], n, p->cents, z, &v) < 0) goto fail;
                SET(i, v);
                break;
            }
            default:
                goto bad_plan;
            }
        }
        if (code == LABELS) {
            if (!fraud_ts && !(fraud_ts = list_attr(h, s_fraud_ts))) goto fail;
            for (Py_ssize_t w = 0; w < n_foff; w++) {
                long long off, bound;
                fraud[w] = 0;
                if (!PyList_GET_SIZE(fraud_ts)) continue;
                if (as_ll(PyTuple_GET_ITEM(fraud_offsets, w), &off) < 0) goto fail;
                if (sub_ll(p->t, off, &bound) < 0) goto fail;
                if (bisect_right(fraud_ts, bound, &fraud[w]) < 0) goto fail;
            }
            for (Py_ssize_t r = 0; r < n_items; r++) {
                Py_ssize_t i, hi, lo, fhi, flo;
                if (slot_index(items, r, 0, p->n_out, &i) < 0 ||
                    slot_index(items, r, 1, n_off, &hi) < 0 ||
                    slot_index(items, r, 2, n_off, &lo) < 0 ||
                    slot_index(items, r, 3, n_foff, &fhi) < 0 ||
                    slot_index(items, r, 4, n_foff, &flo) < 0)
                    goto fail;
                int rate = PyObject_IsTrue(PyTuple_GET_ITEM(PyTuple_GET_ITEM(items, r), 5));
                if (rate < 0) goto fail;
                long long frauds = (long long)(fraud[fhi] - fraud[flo]);
                if (!rate) {
                    SET(i, (double)frauds);
                } else {
                    long long paid = (long long)(starts[hi] - starts[lo]);
                    double v;
                    if (paid > 0) {
                        if (true_div(frauds, paid, &v) < 0) goto fail;
                    } else {
                        v = NAN;
                    }
                    SET(i, v);
                }
            }
        }
    }
    rc = 0;
    goto done;
bad_plan:
    PyErr_SetString(PyExc_ValueError, "a plan the kernel does not know");
fail:
    rc = -1;
done:
    Py_XDECREF(ts);
    Py_XDECREF(csum);
    Py_XDECREF(cents);
    Py_XDECREF(cards);
    Py_XDECREF(lat);
    Py_XDECREF(lon);
    Py_XDECREF(fraud_ts);
    return rc;
}

static PyObject *fill(PyObject *self, PyObject *args) {
    Py_buffer buf;
    PyObject *t_obj, *cents_obj, *plans, *hists;
    Payment p;
    if (!PyArg_ParseTuple(args, "w*OOOddO!O!dd", &buf, &t_obj, &cents_obj, &p.card, &p.mlat,
                          &p.mlon, &PyTuple_Type, &plans, &PyList_Type, &hists, &p.deg,
                          &p.radius))
        return NULL;
    PyObject *result = NULL;
    if (buf.itemsize != sizeof(double) || buf.len % (Py_ssize_t)sizeof(double)) {
        PyErr_SetString(PyExc_TypeError, "out must be a buffer of float64");
        goto end;
    }
    if (PyList_GET_SIZE(hists) != PyTuple_GET_SIZE(plans)) {
        PyErr_SetString(PyExc_ValueError, "one history (or None) per plan");
        goto end;
    }
    p.out = (double *)buf.buf;
    p.n_out = buf.len / (Py_ssize_t)sizeof(double);
    if (as_ll(t_obj, &p.t) < 0 || as_ll(cents_obj, &p.cents) < 0) goto end;
    for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(plans); j++) {
        PyObject *h = PyList_GET_ITEM(hists, j);
        if (h == Py_None) continue; /* the entity is unknown for this payment */
        PyObject *plan = PyTuple_GET_ITEM(plans, j);
        if (!PyTuple_Check(plan) || PyTuple_GET_SIZE(plan) != 4) {
            PyErr_SetString(PyExc_TypeError, "a plan is (offsets, fraud_offsets, sums, ops)");
            goto end;
        }
        if (fill_entity(&p, plan, h) < 0) goto end;
    }
    result = Py_NewRef(Py_None);
end:
    PyBuffer_Release(&buf);
    return result;
}

/* History.forget_before(bound, lazy=True) then History.append(event), for every history a
   payment is recorded in (features/state.py MemoryState.record_payment): the appends in C,
   the same objects appended (ints and floats as the event holds them, the running total by
   Python's own int addition); a prefix due to be dropped is dropped by the Python method. */
static PyObject *s_forget_before, *s_lazy, *s_zero;

static int append_one(PyObject *h, PyObject *name, PyObject *value) {
    PyObject *list = list_attr(h, name);
    if (!list) return -1;
    int rc = PyList_Append(list, value);
    Py_DECREF(list);
    return rc;
}

static int forget_due(PyObject *h, PyObject *bound, int *due) {
    PyObject *ts = list_attr(h, s_ts), *fraud_ts = NULL;
    int rc = -1;
    *due = 0;
    if (!ts) return -1;
    Py_ssize_t n = PyList_GET_SIZE(ts);
    if (n) { /* ts[len(ts) >> 4] <= bound: the lazy drop is due */
        int le = PyObject_RichCompareBool(PyList_GET_ITEM(ts, n >> 4), bound, Py_LE);
        if (le < 0) goto done;
        *due = le;
    }
    if (!*due) { /* fraud_ts[0] <= bound */
        if (!(fraud_ts = list_attr(h, s_fraud_ts))) goto done;
        if (PyList_GET_SIZE(fraud_ts)) {
            int le = PyObject_RichCompareBool(PyList_GET_ITEM(fraud_ts, 0), bound, Py_LE);
            if (le < 0) goto done;
            *due = le;
        }
    }
    rc = 0;
done:
    Py_DECREF(ts);
    Py_XDECREF(fraud_ts);
    return rc;
}

static PyObject *record(PyObject *self, PyObject *args) {
    PyObject *hists, *ts, *cents, *card, *lat, *lon, *bound;
    if (!PyArg_ParseTuple(args, "O!OOOOOO", &PyList_Type, &hists, &ts, &cents, &card, &lat, &lon,
                          &bound))
        return NULL;
    for (Py_ssize_t j = 0; j < PyList_GET_SIZE(hists); j++) {
        PyObject *h = PyList_GET_ITEM(hists, j), *csum, *total;
        int due;
        if (forget_due(h, bound, &due) < 0) return NULL;
        if (due) {
            PyObject *method = PyObject_GetAttr(h, s_forget_before), *kw, *res = NULL;
            if (!method) return NULL;
            PyObject *pos = PyTuple_Pack(1, bound);
            kw = Py_BuildValue("{OO}", s_lazy, Py_True);
            if (pos && kw) res = PyObject_Call(method, pos, kw);
            Py_DECREF(method);
            Py_XDECREF(pos);
            Py_XDECREF(kw);
            if (!res) return NULL;
            Py_DECREF(res);
        }
        if (append_one(h, s_ts, ts) < 0 || append_one(h, s_cents, cents) < 0) return NULL;
        if (!(csum = list_attr(h, s_csum))) return NULL;
        Py_ssize_t n = PyList_GET_SIZE(csum);
        /* (csum[-1] if csum else 0) + cents */
        total = PyNumber_Add(n ? PyList_GET_ITEM(csum, n - 1) : s_zero, cents);
        if (!total || PyList_Append(csum, total) < 0) {
            Py_XDECREF(total);
            Py_DECREF(csum);
            return NULL;
        }
        Py_DECREF(total);
        Py_DECREF(csum);
        if (append_one(h, s_cards, card) < 0 || append_one(h, s_lat, lat) < 0 ||
            append_one(h, s_lon, lon) < 0)
            return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"fill", fill, METH_VARARGS, "The windowed features of one payment (see the module)."},
    {"record", record, METH_VARARGS, "Append one payment to its histories (see record)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "features._windows",
    "The windowed features of one payment, in C (features/online.py plans them).", -1, methods,
};

PyMODINIT_FUNC PyInit__windows(void) {
    if (!(s_ts = PyUnicode_InternFromString("ts")) ||
        !(s_csum = PyUnicode_InternFromString("csum")) ||
        !(s_cents = PyUnicode_InternFromString("cents")) ||
        !(s_cards = PyUnicode_InternFromString("cards")) ||
        !(s_lat = PyUnicode_InternFromString("lat")) ||
        !(s_lon = PyUnicode_InternFromString("lon")) ||
        !(s_fraud_ts = PyUnicode_InternFromString("fraud_ts")) ||
        !(s_forget_before = PyUnicode_InternFromString("forget_before")) ||
        !(s_lazy = PyUnicode_InternFromString("lazy")) || !(s_zero = PyLong_FromLong(0)))
        return NULL;
    PyObject *mod = PyModule_Create(&module);
    /* the interface's version: a build of an older _windows.c (fill's arguments, no record)
       is refused by features/online.py and features/state.py instead of misread */
    if (mod && PyModule_AddIntConstant(mod, "ABI", 2) < 0) {
        Py_DECREF(mod);
        return NULL;
    }
    return mod;
}
