# Grouping: rows -> resource, scope and (metrics) metric groups as to_request forms them,
# the request of a range of rows, and the cut of the rows into requests. Relies on
# wire.pxi, columns.pxi, common.pxi and the record writers (traces.pxi, logs.pxi,
# metrics.pxi); used by the Encoder in _encoder.pyx.
#
# to_request groups rows by the *values* of their resource columns, then of their scope
# columns, then (metrics) of their metric columns, each in order of first appearance.
# Here a group's key is the bytes the encoder writes for it (the Resource field and the
# schema_url field; the same for the scope; a metric's own fields with its type,
# temporality and monotonicity), after one byte of which top-level columns are null, as
# to_request tells None from an empty value. Equal values give equal bytes; NaN doubles
# with different payloads in a resource's attributes are the one difference (to_request
# finds their repr() equal): they make two groups here.

cdef enum Signal:
    TRACES = 0
    METRICS = 1
    LOGS = 2


ctypedef struct Interner:
    Buf keys           # every group's key, back to back
    int64_t count
    int64_t cap
    int64_t* offset    # of its key in `keys`, by group id
    int64_t* length
    uint64_t* hash
    int64_t* parent    # the enclosing group (a scope's resource, a metric's scope), -1 for none
    int64_t* rep       # the row (of the sources columns, or for metrics of the data) it came from
    int64_t* size      # the bytes its own fields take in a request (requests(): the cut)
    int64_t* extra     # metrics: the bytes of the data message's own fields
    int64_t* kind      # metrics: the metric type, 1 gauge ... 5 summary
    int64_t* slots     # open addressing: a group id or -1; mask + 1 of them
    int64_t mask


cdef uint64_t key_hash(const uint8_t* p, int64_t n, int64_t parent) noexcept nogil:
    """A 64-bit hash of a key: 8 bytes a step, multiply and xor-shift (no cryptography needed)."""
    cdef uint64_t h = 0x9E3779B97F4A7C15ULL ^ (<uint64_t>parent * 0xFF51AFD7ED558CCDULL) ^ <uint64_t>n
    cdef uint64_t word
    cdef int64_t k = 0
    while k + 8 <= n:  # bounds: 8 bytes from p + k, k + 8 <= n
        memcpy(&word, p + k, 8)
        h = (h ^ word) * 0xBF58476D1CE4E5B9ULL
        h ^= h >> 29
        k += 8
    if k < n:
        word = 0
        memcpy(&word, p + k, n - k)  # bounds: the n - k < 8 bytes left
        h = (h ^ word) * 0xBF58476D1CE4E5B9ULL
        h ^= h >> 29
    return h ^ (h >> 32)


cdef int64_t* alloc_ids(int64_t n) except NULL nogil:
    cdef int64_t* p = <int64_t*>malloc((n if n > 0 else 1) * sizeof(int64_t))
    if p == NULL:
        with gil:
            raise MemoryError()
    return p


cdef int grow_ids(int64_t** array, int64_t cap) except -1 nogil:
    cdef void* grown = realloc(array[0], cap * sizeof(int64_t))
    if grown == NULL:
        with gil:
            raise MemoryError()
    array[0] = <int64_t*>grown
    return 0


cdef int interner_grow(Interner* t) except -1 nogil:
    """Twice the room for groups, and the slots rebuilt."""
    cdef int64_t cap = t.cap * 2 if t.cap else 16
    cdef int64_t k, slot, size
    cdef void* grown = realloc(t.hash, cap * sizeof(uint64_t))
    if grown == NULL:
        with gil:
            raise MemoryError()
    t.hash = <uint64_t*>grown
    grow_ids(&t.offset, cap)
    grow_ids(&t.length, cap)
    grow_ids(&t.parent, cap)
    grow_ids(&t.rep, cap)
    grow_ids(&t.size, cap)
    grow_ids(&t.extra, cap)
    grow_ids(&t.kind, cap)
    t.cap = cap
    size = cap * 2  # at most half full
    free(t.slots)
    t.slots = alloc_ids(size)
    t.mask = size - 1
    for k in range(size):
        t.slots[k] = -1
    for k in range(t.count):
        slot = <int64_t>(t.hash[k] & <uint64_t>t.mask)
        while t.slots[slot] != -1:
            slot = (slot + 1) & t.mask
        t.slots[slot] = k
    return 0


cdef int64_t intern(Interner* t, int64_t parent, const uint8_t* key, int64_t n, int64_t rep) except -1 nogil:
    """The group id of `key` under `parent`: a known one, or the next (t.count grows by one)."""
    cdef uint64_t h = key_hash(key, n, parent)
    cdef int64_t slot, id_
    if t.count >= t.cap:
        interner_grow(t)
    slot = <int64_t>(h & <uint64_t>t.mask)
    while True:
        id_ = t.slots[slot]
        if id_ == -1:
            break
        if (t.hash[id_] == h and t.parent[id_] == parent and t.length[id_] == n
                and memcmp(t.keys.data + t.offset[id_], key, n) == 0):
            return id_
        slot = (slot + 1) & t.mask
    id_ = t.count
    t.count += 1
    t.slots[slot] = id_
    t.offset[id_] = <int64_t>t.keys.len
    t.length[id_] = n
    t.hash[id_] = h
    t.parent[id_] = parent
    t.rep[id_] = rep
    t.size[id_] = 0
    t.extra[id_] = 0
    t.kind[id_] = 0
    w_raw(&t.keys, key, n)
    return id_


cdef void interner_free(Interner* t) noexcept nogil:
    buf_free(&t.keys)
    free(t.offset)
    free(t.length)
    free(t.hash)
    free(t.parent)
    free(t.rep)
    free(t.size)
    free(t.extra)
    free(t.kind)
    free(t.slots)
    memset(t, 0, sizeof(Interner))


ctypedef struct Enc:
    int signal
    int64_t rows
    const Col* cols            # the data columns, in the signal's order (DATA_COLUMNS)
    const Col* src             # the 13 sources columns (of the rows themselves, full layout)
    int64_t* src_row           # each row's row of `src`
    int64_t* resource          # each row's resource group
    int64_t* scope             # each row's scope group
    int64_t* metric            # each row's metric group (metrics)
    Interner resources
    Interner scopes
    Interner metrics
    Scratch scratch
    Buf key                    # a group's key being built
    Buf record                 # requests(): one record, to measure it
    # the groups of one range of rows, in order of first appearance (write_range, cut)
    int64_t epoch
    int64_t* order             # the range's resource groups
    int64_t* resource_stamp
    int64_t* resource_first    # its first scope group / the size of its content (cut)
    int64_t* resource_last
    int64_t* scope_stamp
    int64_t* scope_next        # the next scope group of the same resource
    int64_t* scope_first       # its first row (or metric group) / the size of its content
    int64_t* scope_last
    int64_t* metric_stamp
    int64_t* metric_next
    int64_t* metric_first      # its first row / the size of its data message
    int64_t* metric_last
    int64_t* row_next          # the next row of the same scope (or metric) group


cdef void enc_free(Enc* e) noexcept nogil:
    free(e.src_row)
    free(e.resource)
    free(e.scope)
    free(e.metric)
    free(e.order)
    free(e.resource_stamp)
    free(e.resource_first)
    free(e.resource_last)
    free(e.scope_stamp)
    free(e.scope_next)
    free(e.scope_first)
    free(e.scope_last)
    free(e.metric_stamp)
    free(e.metric_next)
    free(e.metric_first)
    free(e.metric_last)
    free(e.row_next)
    interner_free(&e.resources)
    interner_free(&e.scopes)
    interner_free(&e.metrics)
    free(e.scratch.slots)
    buf_free(&e.key)
    buf_free(&e.record)
    memset(e, 0, sizeof(Enc))


cdef int map_sources(Enc* e, const Col* row_ids, const Col* source_ids) except -1 nogil:
    """Each row's row of the sources table: the first one with its source_id (as
    otlpd.sources.join, by pc.index_in)."""
    cdef int64_t n = source_ids.length
    cdef int64_t size = 16
    cdef int64_t mask, slot, k, i, found
    cdef uint64_t value, wanted
    cdef int64_t* slots
    cdef uint64_t* keys
    while size < 2 * n:
        size *= 2
    mask = size - 1
    slots = alloc_ids(size)
    keys = <uint64_t*>malloc(size * sizeof(uint64_t))
    if keys == NULL:
        free(slots)
        with gil:
            raise MemoryError()
    try:
        for k in range(size):
            slots[k] = -1
        for k in range(n):
            if not col_fixed(source_ids, k, &value):
                continue
            slot = <int64_t>(key_hash(<const uint8_t*>&value, 8, 0) & <uint64_t>mask)
            while slots[slot] != -1 and keys[slot] != value:
                slot = (slot + 1) & mask
            if slots[slot] == -1:
                slots[slot] = k
                keys[slot] = value
        for i in range(e.rows):
            if not col_fixed(row_ids, i, &wanted):
                fail(b"a row without a source_id")
            slot = <int64_t>(key_hash(<const uint8_t*>&wanted, 8, 0) & <uint64_t>mask)
            found = -1
            while slots[slot] != -1:
                if keys[slot] == wanted:
                    found = slots[slot]
                    break
                slot = (slot + 1) & mask
            if found == -1:
                with gil:
                    raise ValueError(f"source_id {wanted} is not in the sources table")
            e.src_row[i] = found
    finally:
        free(slots)
        free(keys)
    return 0


cdef int64_t resource_group(Enc* e, int64_t j) except -1 nogil:
    """The resource group of sources row `j`."""
    cdef Buf* key = &e.key
    cdef const Col* src = e.src
    cdef int64_t id_
    key.len = 0
    w_raw(key, b"\0", 1)
    key.data[0] = (attributes_null(&src[S_RES_ATTRS], j) | col_null(&src[S_RES_DROPPED], j) << 1
                   | col_null(&src[S_RES_REFS], j) << 2 | col_null(&src[S_RES_URL], j) << 3)
    w_resource(key, &e.scratch, src, j)
    w_url(key, &src[S_RES_URL], j)
    id_ = intern(&e.resources, -1, key.data, <int64_t>key.len, j)
    e.resources.size[id_] = <int64_t>key.len - 1
    return id_


cdef int64_t scope_group(Enc* e, int64_t resource, int64_t j) except -1 nogil:
    """The scope group of sources row `j`, within its resource group."""
    cdef Buf* key = &e.key
    cdef const Col* src = e.src
    cdef int64_t id_
    key.len = 0
    w_raw(key, b"\0", 1)
    key.data[0] = (col_null(&src[S_SCOPE_NAME], j) | col_null(&src[S_SCOPE_VERSION], j) << 1
                   | attributes_null(&src[S_SCOPE_ATTRS], j) << 2
                   | col_null(&src[S_SCOPE_DROPPED], j) << 3 | col_null(&src[S_SCOPE_URL], j) << 4)
    w_scope(key, &e.scratch, src, j)
    w_url(key, &src[S_SCOPE_URL], j)
    id_ = intern(&e.scopes, resource, key.data, <int64_t>key.len, j)
    e.scopes.size[id_] = <int64_t>key.len - 1
    return id_


cdef int group_rows(Enc* e) except -1 nogil:
    """Every row's resource, scope and metric group (e.resource, e.scope, e.metric)."""
    cdef int64_t n_src = e.src[0].length
    cdef int64_t* resource_of = alloc_ids(n_src)
    cdef int64_t* scope_of = alloc_ids(n_src)
    cdef int64_t i, j, r
    try:
        for j in range(n_src):
            resource_of[j] = -1
            scope_of[j] = -1
        for i in range(e.rows):
            j = e.src_row[i]
            if j < 0 or j >= n_src:  # bounds: a row of the sources columns
                fail(b"a row's source beyond the sources table")
            r = resource_of[j]
            if r == -1:
                r = resource_of[j] = resource_group(e, j)
                scope_of[j] = scope_group(e, r, j)
            e.resource[i] = r
            e.scope[i] = scope_of[j]
            if e.signal == METRICS:
                e.metric[i] = metric_group(e, e.scope[i], i)
    finally:
        free(resource_of)
        free(scope_of)
    return 0


cdef int alloc_orders(Enc* e) except -1 nogil:
    """The arrays of write_range and cut, once the groups are known."""
    cdef int64_t r = e.resources.count, s = e.scopes.count, m = e.metrics.count
    cdef int64_t k
    e.order = alloc_ids(r)
    e.resource_stamp = alloc_ids(r)
    e.resource_first = alloc_ids(r)
    e.resource_last = alloc_ids(r)
    e.scope_stamp = alloc_ids(s)
    e.scope_next = alloc_ids(s)
    e.scope_first = alloc_ids(s)
    e.scope_last = alloc_ids(s)
    e.metric_stamp = alloc_ids(m)
    e.metric_next = alloc_ids(m)
    e.metric_first = alloc_ids(m)
    e.metric_last = alloc_ids(m)
    e.row_next = alloc_ids(e.rows)
    for k in range(r):
        e.resource_stamp[k] = 0
    for k in range(s):
        e.scope_stamp[k] = 0
    for k in range(m):
        e.metric_stamp[k] = 0
    e.epoch = 0
    return 0


cdef inline void append(int64_t* first, int64_t* last, int64_t* next_, int64_t owner, int64_t item) noexcept nogil:
    """Append `item` to the list of `owner` (first[owner] .. last[owner], linked by next_)."""
    next_[item] = -1
    if first[owner] == -1:
        first[owner] = item
    else:
        next_[last[owner]] = item
    last[owner] = item


cdef int64_t order_range(Enc* e, int64_t start, int64_t stop) noexcept nogil:
    """Link the groups of rows [start, stop) in order of first appearance; how many resources."""
    cdef int64_t n_order = 0
    cdef int64_t i, r, s, m
    cdef int64_t epoch
    e.epoch += 1
    epoch = e.epoch
    for i in range(start, stop):
        r = e.resource[i]
        s = e.scope[i]
        if e.resource_stamp[r] != epoch:
            e.resource_stamp[r] = epoch
            e.order[n_order] = r
            n_order += 1
            e.resource_first[r] = -1
        if e.scope_stamp[s] != epoch:
            e.scope_stamp[s] = epoch
            e.scope_first[s] = -1
            append(e.resource_first, e.resource_last, e.scope_next, r, s)
        if e.signal == METRICS:
            m = e.metric[i]
            if e.metric_stamp[m] != epoch:
                e.metric_stamp[m] = epoch
                e.metric_first[m] = -1
                append(e.scope_first, e.scope_last, e.metric_next, s, m)
            append(e.metric_first, e.metric_last, e.row_next, m, i)
        else:
            append(e.scope_first, e.scope_last, e.row_next, s, i)
    return n_order


cdef int write_range(Enc* e, Buf* out, int64_t start, int64_t stop) except -1 nogil:
    """The Export request of rows [start, stop), as to_request builds it from those rows."""
    cdef int64_t n_order = order_range(e, start, stop)
    cdef int64_t k, r, s, i, j
    cdef size_t resource_mark, scope_mark, record_mark
    for k in range(n_order):
        r = e.order[k]
        j = e.resources.rep[r]
        resource_mark = begin(out, 1)
        w_resource(out, &e.scratch, e.src, j)
        s = e.resource_first[r]
        while s != -1:
            scope_mark = begin(out, 2)
            w_scope(out, &e.scratch, e.src, e.scopes.rep[s])
            i = e.scope_first[s]
            if e.signal == METRICS:
                while i != -1:
                    w_metric(e, out, i)
                    i = e.metric_next[i]
            else:
                while i != -1:
                    record_mark = begin(out, 2)
                    w_record(e, out, i)
                    end(out, record_mark)
                    i = e.row_next[i]
            w_url(out, &e.src[S_SCOPE_URL], e.scopes.rep[s])
            end(out, scope_mark)
            s = e.scope_next[s]
        w_url(out, &e.src[S_RES_URL], j)
        end(out, resource_mark)
    return 0


cdef int64_t record_size(Enc* e, int64_t i) except -1 nogil:
    """The bytes row `i` takes in a request as its span, log record or data point field."""
    e.record.len = 0
    if e.signal == METRICS:
        w_point(e, &e.record, e.metrics.kind[e.metric[i]], i)
    else:
        w_record(e, &e.record, i)
    return field_size(<int64_t>e.record.len)


cdef int64_t cut(Enc* e, int64_t max_items, int64_t max_bytes, int64_t* starts) except -1 nogil:
    """Cut the rows into requests (their first rows into `starts`; how many): each the longest
    run of rows from where the previous one ended with at most max_items records and an
    encoding of at most max_bytes bytes (a first record larger than that alone).

    A request's exact size follows each group's content size as rows are added, as
    write_range would write them (sizes of nested fields are their tags, minimal length
    varints and contents): field_size(content) for each resource, scope, metric and data
    message, plus the records' own fields."""
    cdef int64_t n_pieces = 0, count = 0, total = 0
    cdef int64_t epoch = 0
    cdef int64_t i = 0, r, s, m
    cdef int64_t rec, delta, data_old, data_new, old, new, scope_old, scope_new, res_old, res_new
    cdef int64_t new_total
    cdef int new_metric, new_scope, new_resource
    while i < e.rows:
        if count == 0:
            e.epoch += 1
            epoch = e.epoch
            starts[n_pieces] = i
            n_pieces += 1
            total = 0
        rec = record_size(e, i)
        r = e.resource[i]
        s = e.scope[i]
        data_old = data_new = 0
        new_metric = 0
        m = 0
        if e.signal == METRICS:
            m = e.metric[i]
            new_metric = e.metric_stamp[m] != epoch
            data_old = e.metrics.extra[m] if new_metric else e.metric_first[m]
            data_new = data_old + rec
            old = 0 if new_metric else field_size(e.metrics.size[m] + field_size(data_old))
            delta = field_size(e.metrics.size[m] + field_size(data_new)) - old
        else:
            delta = rec
        new_scope = e.scope_stamp[s] != epoch
        scope_old = e.scopes.size[s] if new_scope else e.scope_first[s]
        scope_new = scope_old + delta
        delta = field_size(scope_new) - (0 if new_scope else field_size(scope_old))
        new_resource = e.resource_stamp[r] != epoch
        res_old = e.resources.size[r] if new_resource else e.resource_first[r]
        res_new = res_old + delta
        new_total = total + field_size(res_new) - (0 if new_resource else field_size(res_old))
        if count > 0 and (count >= max_items or new_total > max_bytes):
            count = 0  # this row starts the next request
            continue
        if e.signal == METRICS:
            e.metric_stamp[m] = epoch
            e.metric_first[m] = data_new
        e.scope_stamp[s] = epoch
        e.scope_first[s] = scope_new
        e.resource_stamp[r] = epoch
        e.resource_first[r] = res_new
        total = new_total
        count += 1
        i += 1
    return n_pieces


cdef int w_record(Enc* e, Buf* out, int64_t i) except -1 nogil:
    """The fields of the span or log record of row `i`."""
    if e.signal == TRACES:
        return w_span(out, &e.scratch, e.cols, i)
    return w_log(out, &e.scratch, e.cols, i)
