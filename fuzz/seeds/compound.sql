-- Every lexical form of the three dialects, and compound statements.
CREATE TRIGGER t AFTER INSERT ON a BEGIN UPDATE b SET x = CASE WHEN new.v > 0 THEN 1 ELSE 0 END; END;
SELECT 'it''s', "q""i", `b``t`, [br], X'00', :usr, ?1, @v, $x /* c; */ -- d;
BEGIN; BEGIN TRANSACTION; COMMIT;
CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN a > 0 THEN 1 END; END;
DO $body$ BEGIN PERFORM format($f$%s;$f$, $1); END $body$;
SELECT E'a\'b', U&'d', U&"e" /* a /* nested */ b */;
# MariaDB
DELIMITER //
CREATE PROCEDURE p() BEGIN lbl: LOOP IF 1 THEN LEAVE lbl; END IF; END LOOP lbl; CASE 1 WHEN 1 THEN SELECT 'a\'b'; END CASE; END//
DELIMITER ;
/*!40101 SET @a = 1 */;
