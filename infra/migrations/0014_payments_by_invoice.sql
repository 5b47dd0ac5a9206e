-- Derived amounts (issue 17 item 6): after a batch that moved a payment, the processor reads
-- every live payment of the invoices it named, to derive their amount_due and status. One
-- index probe per invoice instead of a scan of the tenant's payments. An expression index,
-- not a generated column: adding a stored column would rewrite the table.
CREATE INDEX payments_tenant_invoice_idx ON payments (tenant_id, (data ->> 'invoice_id'))
    WHERE deleted_at IS NULL;
