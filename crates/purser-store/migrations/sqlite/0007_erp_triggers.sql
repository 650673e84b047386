CREATE TRIGGER erp_exports_no_update BEFORE UPDATE ON erp_exports
BEGIN SELECT RAISE(ABORT, 'ERP exports never change'); END;
CREATE TRIGGER erp_exports_no_delete BEFORE DELETE ON erp_exports
BEGIN SELECT RAISE(ABORT, 'ERP exports never change'); END;
CREATE TRIGGER erp_export_lines_no_update BEFORE UPDATE ON erp_export_lines
BEGIN SELECT RAISE(ABORT, 'ERP exports never change'); END;
CREATE TRIGGER erp_export_lines_no_delete BEFORE DELETE ON erp_export_lines
BEGIN SELECT RAISE(ABORT, 'ERP exports never change'); END;
