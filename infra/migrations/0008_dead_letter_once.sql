-- One dead letter per Kafka record: parking an event again must not park it twice.
--
-- The processor now retries a batch in place after an outage instead of abandoning it,
-- and Kafka hands a batch out again after a crash or a rebalance; either can park the
-- same record a second time. Two dead letters for one record would be redriven twice
-- and counted twice by the ledger (accepted = applied + duplicates + dead-lettered + in
-- flight). A record's (topic, partition, offset) names one delivery: a redrive or a
-- replay produces a new offset, so each of those can still be parked on its own.
DELETE FROM dead_letters d
 USING dead_letters keep
 WHERE d.topic IS NOT NULL AND d.kafka_offset IS NOT NULL
   AND keep.topic = d.topic AND keep.kafka_partition = d.kafka_partition
   AND keep.kafka_offset = d.kafka_offset
   AND (keep.created_at, keep.id) < (d.created_at, d.id);

CREATE UNIQUE INDEX dead_letters_record_key ON dead_letters (topic, kafka_partition, kafka_offset)
    WHERE topic IS NOT NULL AND kafka_offset IS NOT NULL;
