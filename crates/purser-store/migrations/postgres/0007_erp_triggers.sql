CREATE TRIGGER erp_exports_no_change BEFORE UPDATE OR DELETE ON erp_exports
FOR EACH ROW EXECUTE FUNCTION metering_refuse_change();
CREATE TRIGGER erp_exports_no_truncate BEFORE TRUNCATE ON erp_exports
FOR EACH STATEMENT EXECUTE FUNCTION metering_refuse_change();
CREATE TRIGGER erp_export_lines_no_change BEFORE UPDATE OR DELETE ON erp_export_lines
FOR EACH ROW EXECUTE FUNCTION metering_refuse_change();
CREATE TRIGGER erp_export_lines_no_truncate BEFORE TRUNCATE ON erp_export_lines
FOR EACH STATEMENT EXECUTE FUNCTION metering_refuse_change();
