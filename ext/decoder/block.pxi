# Exported blocks: where the memory of an exported or merged batch comes from (malloc,
# prefaulted mappings and their cache, the merge slots), the Block header with its
# reference count, the release callback, and the layout of an ArrowArray node in a
# block. Relies on core.pxi; used by export.pxi, merge.pxi and stats() (api.pxi).

# ============================================================== exported blocks

# Shared by every empty (zero-byte) buffer; never freed.
cdef uint64_t ZERO_BUF[2]
memset(ZERO_BUF, 0, sizeof(ZERO_BUF))

cdef extern from *:
    """
    static inline long otlpd_refs_release(long *refs) {
        return __atomic_sub_fetch(refs, 1, __ATOMIC_ACQ_REL);
    }
    """
    long refs_release "otlpd_refs_release"(long* refs) noexcept nogil

cdef extern from "stdlib.h" nogil:
    int posix_memalign(void** memptr, size_t alignment, size_t size)

cdef extern from *:
    """
    #include <sys/mman.h>
    #ifndef MAP_ANONYMOUS
    #define MAP_ANONYMOUS MAP_ANON
    #endif
    #ifndef MAP_POPULATE
    #define MAP_POPULATE 0
    #endif
    #include <sched.h>
    static char otlpd_map_cache_busy = 0;
    static inline void otlpd_map_cache_lock(void) {
        while (__atomic_test_and_set(&otlpd_map_cache_busy, __ATOMIC_ACQUIRE)) sched_yield();
    }
    static inline void otlpd_map_cache_unlock(void) {
        __atomic_clear(&otlpd_map_cache_busy, __ATOMIC_RELEASE);
    }
    """
    void map_cache_lock "otlpd_map_cache_lock"() noexcept nogil
    void map_cache_unlock "otlpd_map_cache_unlock"() noexcept nogil
    void* mmap(void* addr, size_t length, int prot, int flags, int fd, long offset) nogil
    int munmap(void* addr, size_t length) nogil
    void* MAP_FAILED
    int PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_ANONYMOUS, MAP_POPULATE

# Blocks of at least this size get a mapping of their own (glibc's default mmap
# threshold), prefaulted with MAP_POPULATE, and are unmapped when released.
# Measured under full load (docs/DECODER.md, "Memory"): from malloc, freed
# batches left 100-200 MiB of free but resident chunks in glibc's arenas;
# mapped, the daemon's RSS follows the batches it holds. Fresh pages cost
# decode time, so up to MAP_CACHE_BYTES of released mappings are kept for
# reuse: a fixed bound on what is resident but unused.
cdef int64_t MAP_MIN_BYTES = 128 * 1024
cdef int64_t MAP_GRAIN = 4096            # mapping sizes are multiples of this (a page)
cdef int64_t MAP_CACHE_BYTES = 16 * 1024 * 1024
cdef enum:
    MAP_CACHE_SLOTS = 32

cdef struct Mapping:
    void* p
    int64_t size

# Touched only under map_cache_lock() (any thread: blocks are released wherever
# the last reference to a batch goes).
cdef Mapping MAP_CACHE[MAP_CACHE_SLOTS]
cdef int MAP_CACHE_N = 0
cdef int64_t MAP_CACHED = 0
cdef int64_t MAP_TOTAL = 0     # bytes of all mappings: batches alive + cached


cdef void* map_new(int64_t* size, int64_t need) noexcept nogil:
    """A new prefaulted mapping of `need` bytes (a multiple of MAP_GRAIN), counted
    in MAP_TOTAL; *size is set to `need`. NULL if the kernel refuses."""
    global MAP_TOTAL
    cdef void* p = mmap(NULL, <size_t>need, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0)
    if p == MAP_FAILED:
        return NULL
    map_cache_lock()
    MAP_TOTAL += need
    map_cache_unlock()
    size[0] = need
    return p


cdef void* map_get(int64_t* size) noexcept nogil:
    """A mapping of at least *size bytes (updated to its real size) or NULL: the
    smallest cached one at most 1/8 larger (a reused mapping is resident in full,
    so a much larger one would hold memory the buffer bounds do not count), else
    a new one."""
    global MAP_CACHE_N, MAP_CACHED, MAP_TOTAL
    cdef int64_t need = (size[0] + MAP_GRAIN - 1) // MAP_GRAIN * MAP_GRAIN
    cdef int i
    cdef int best = -1
    cdef void* p = NULL
    map_cache_lock()
    for i in range(MAP_CACHE_N):
        if (MAP_CACHE[i].size >= need and MAP_CACHE[i].size <= need + need // 8
                and (best < 0 or MAP_CACHE[i].size < MAP_CACHE[best].size)):
            best = i
    if best >= 0:
        p = MAP_CACHE[best].p
        need = MAP_CACHE[best].size
        MAP_CACHED -= need
        MAP_CACHE_N -= 1
        MAP_CACHE[best] = MAP_CACHE[MAP_CACHE_N]
    map_cache_unlock()
    if p == NULL:
        return map_new(size, need)
    size[0] = need
    return p


cdef void map_put(void* p, int64_t size) noexcept nogil:
    """Keep a released mapping for reuse if the cache has room, else unmap it."""
    global MAP_CACHE_N, MAP_CACHED, MAP_TOTAL
    cdef bint kept = False
    map_cache_lock()
    if MAP_CACHE_N < MAP_CACHE_SLOTS and MAP_CACHED + size <= MAP_CACHE_BYTES:
        MAP_CACHE[MAP_CACHE_N].p = p
        MAP_CACHE[MAP_CACHE_N].size = size
        MAP_CACHE_N += 1
        MAP_CACHED += size
        kept = True
    else:
        MAP_TOTAL -= size
    map_cache_unlock()
    if not kept:
        munmap(p, <size_t>size)


# The writer merges one batch at a time per signal and frees it once written, so
# the mapping of each signal's last merged batch is kept for the next merge: a
# merge writes ~32 MiB, and fresh pages (zeroing, page faults) had cost about as
# much as the copy itself. Bounded by the writer's concatenated copy, which
# buffer.max_bytes counts (otlpd.writer.split_memory_bound); a merge that needs
# more replaces it with a mapping 1/8 larger than it needs.
cdef void* MERGE_SLOT[3]
cdef int64_t MERGE_SLOT_SIZE[3]
memset(MERGE_SLOT, 0, sizeof(MERGE_SLOT))
memset(MERGE_SLOT_SIZE, 0, sizeof(MERGE_SLOT_SIZE))


cdef void* merge_map_get(int sig, int64_t* size) noexcept nogil:
    """A mapping of at least *size bytes for a merged batch (updated to its real
    size), or NULL: the signal's kept one if large enough, else a new one."""
    global MAP_TOTAL
    cdef int64_t need = (size[0] + MAP_GRAIN - 1) // MAP_GRAIN * MAP_GRAIN
    cdef void* p
    cdef int64_t have
    map_cache_lock()
    p = MERGE_SLOT[sig]
    have = MERGE_SLOT_SIZE[sig]
    MERGE_SLOT[sig] = NULL
    MERGE_SLOT_SIZE[sig] = 0
    if p != NULL and have < need:
        MAP_TOTAL -= have
    map_cache_unlock()
    if p != NULL and have >= need:
        size[0] = have
        return p
    if p != NULL:
        munmap(p, <size_t>have)
    return map_new(size, (need + need // 8 + MAP_GRAIN - 1) // MAP_GRAIN * MAP_GRAIN)


cdef void merge_slot_put(int sig, void* p, int64_t size) noexcept nogil:
    """Keep a released merged batch's mapping for the signal's next merge, unless
    one is kept already (then unmap the smaller)."""
    global MAP_TOTAL
    cdef void* drop = p
    cdef int64_t drop_size = size
    map_cache_lock()
    if MERGE_SLOT[sig] == NULL or MERGE_SLOT_SIZE[sig] < size:
        drop = MERGE_SLOT[sig]
        drop_size = MERGE_SLOT_SIZE[sig]
        MERGE_SLOT[sig] = p
        MERGE_SLOT_SIZE[sig] = size
    if drop != NULL:
        MAP_TOTAL -= drop_size
    map_cache_unlock()
    if drop != NULL:
        munmap(drop, <size_t>drop_size)


cdef enum:
    ALIGN = 64   # every buffer starts on a 64-byte boundary, as Arrow allocates them


cdef inline int64_t aligned(int64_t n) noexcept nogil:
    return (n + (ALIGN - 1)) & ~(<int64_t>(ALIGN - 1))


# An exported batch lives in ONE block: a header holding the count of nodes not
# yet released, then, node by node, its buffer-pointer array, its children's
# pointer array and structs, and its buffers, each 64-byte aligned. One
# allocation (and one free) per batch instead of one per buffer: the decoder's
# growable column buffers stay in the pooled trees and are reused, and a batch's
# memory goes back to the kernel when it is released (MAP_MIN_BYTES;
# docs/DECODER.md, "Memory").
cdef struct Block:
    long refs
    int64_t mapped   # > 0: the block is its own mapping of this many bytes
    int merged       # > 0: a merged batch of signal merged - 1 (its mapping goes back to MERGE_SLOT)


cdef void release_node(ArrowArray* a) noexcept nogil:
    """Release callback of every node: releases its children still owned, then
    drops the node's reference on the batch's block (freed with the last one).

    A consumer may move a child out (copy the struct, mark ours released) and
    release it later: the block lives until every node is released.
    """
    cdef int64_t i
    cdef ArrowArray* ch
    cdef Block* block = <Block*>a.private_data
    for i in range(a.n_children):
        ch = a.children[i]
        if ch.release != NULL:
            ch.release(ch)
    a.buffers = NULL
    a.children = NULL
    a.n_children = 0
    a.release = NULL
    a.private_data = NULL
    if block != NULL and refs_release(&block.refs) == 0:
        if block.merged:
            merge_slot_put(block.merged - 1, block, block.mapped)
        elif block.mapped:
            map_put(block, block.mapped)
        else:
            free(block)


cdef inline int n_buffers(int kind) noexcept nogil:
    """Buffers of an Arrow node of this kind: validity, then values/offsets, then data."""
    return 1 if kind == C_STRUCT else (3 if kind == C_BIN else 2)


cdef inline int64_t kind_meta(int kind, int n_children) noexcept nogil:
    """Bytes of a node's buffer-pointer array plus its children's pointers and structs."""
    return aligned(n_buffers(kind) * sizeof(void*)
                   + n_children * (sizeof(ArrowArray*) + sizeof(ArrowArray)))


cdef inline int64_t node_meta(Col* col) noexcept nogil:
    return kind_meta(col.kind, col.n_children)


cdef uint8_t* node_start(ArrowArray* a, int kind, int n_children, int64_t length,
                         int64_t null_count, uint8_t** cur, Block* block) noexcept nogil:
    """Set up node `a` with its metadata placed in the block at *cur (zeroed: no
    buffers yet, children pointing at their structs); returns the metadata."""
    cdef int nb = n_buffers(kind)
    cdef int i
    cdef uint8_t* meta = cur[0]
    cdef ArrowArray* kids
    memset(meta, 0, <size_t>kind_meta(kind, n_children))
    cur[0] = meta + kind_meta(kind, n_children)
    a.length = length
    a.null_count = null_count
    a.offset = 0
    a.n_buffers = nb
    a.buffers = <const void**>meta
    a.dictionary = NULL
    a.release = release_node
    a.private_data = block
    a.n_children = n_children
    a.children = NULL
    if n_children:
        a.children = <ArrowArray**>(meta + nb * sizeof(void*))
        kids = <ArrowArray*>(meta + nb * sizeof(void*) + n_children * sizeof(ArrowArray*))
        for i in range(n_children):
            a.children[i] = &kids[i]
    return meta


cdef Block* block_new(int64_t* nbytes, int64_t nodes, int merged) noexcept nogil:
    """A block of at least *nbytes (updated to its real size) whose `nodes` nodes
    each hold a reference, or NULL: a mapping of its own from MAP_MIN_BYTES on.
    merged > 0: a merged batch of signal merged - 1 (merge_map_get)."""
    cdef void* mem = NULL
    if merged > 0 and nbytes[0] >= MAP_MIN_BYTES:
        mem = merge_map_get(merged - 1, nbytes)
    elif nbytes[0] >= MAP_MIN_BYTES:
        mem = map_get(nbytes)
        merged = 0
    else:
        if posix_memalign(&mem, ALIGN, <size_t>nbytes[0]) != 0:
            mem = NULL
        merged = 0
    if mem == NULL:
        return NULL
    (<Block*>mem).mapped = nbytes[0] if nbytes[0] >= MAP_MIN_BYTES else 0
    (<Block*>mem).merged = merged
    (<Block*>mem).refs = <long>nodes
    return <Block*>mem
