-- Issue 17: the audit log's Merkle tree kept as C2SP tlog-tiles instead of a row per node.
-- A tile of level L holds the hashes of tree level 8·L, nodes 256·N onwards, 32 bytes each,
-- concatenated (the rightmost tile of a level is partial); it is keyed by L · 2^48 + N. Level-0
-- tiles are the leaf hashes checkpoints certified; every other node of a proof is hashed from
-- at most 128 hashes of one tile. The nodes stored before move into their tiles: the leaves and
-- every eighth level, which the checkpointer stored contiguously from index 0.
CREATE TABLE audit_tiles (
    id      INTEGER PRIMARY KEY,
    hashes  BLOB NOT NULL
);
INSERT INTO audit_tiles (id, hashes)
    SELECT (((id >> 48) / 8) << 48) | ((id & 281474976710655) >> 8),
           unhex(group_concat(hex(hash), '' ORDER BY id))
    FROM audit_nodes
    WHERE ((id >> 48) % 8) = 0
    GROUP BY (id >> 48), ((id & 281474976710655) >> 8);
DROP TABLE audit_nodes;
